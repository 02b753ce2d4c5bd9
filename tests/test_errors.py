"""One error shape: an ApiError is answered by the middlewares alone, as JSON and as a page."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from api.app import create_app
from api.events import TooManyStreams
from api.middlewares import with_json_errors


async def test_an_api_error_is_the_same_answer_for_programs_and_for_people(
    aiohttp_client, settings, tmp_path
) -> None:
    async def refuse(request: web.Request) -> web.Response:
        raise TooManyStreams(2)

    app = create_app(dataclasses.replace(settings, task_counter_path=str(tmp_path / "counter")))
    app.router.add_get("/refused-page", refuse)
    app.router.add_get("/refused-json", with_json_errors(refuse))
    client = await aiohttp_client(app)

    page, answer = await client.get("/refused-page"), await client.get("/refused-json")

    assert page.status == answer.status == 503
    assert page.headers["Retry-After"] == answer.headers["Retry-After"]
    error = await answer.json()
    assert error == TooManyStreams(2).to_dict()
    assert "LIVE_STREAM_LIMIT" in error["error"]
    assert page.content_type == "text/html" and error["message_ru"] in await page.text()
