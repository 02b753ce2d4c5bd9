"""The baseline of the accept path: the least an aiohttp handler can do for ``POST /api/tasks``.

It reads the body and answers 202 with a small JSON, nothing else: no validation, no store, no
broker, no access log. ``python -m bench.bare PORT``; the bench starts and stops it.
"""

from __future__ import annotations

import sys

from aiohttp import web

from common import routes


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"tasks": []}, status=202)


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_post(routes.TASKS, accept)
    app.router.add_get(routes.HEALTHZ, healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
