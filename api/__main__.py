"""``python -m api``: configure logging from the settings and serve the application."""

import gc
import logging

from aiohttp import web

from api.access_log import FORMAT as ACCESS_LOG_FORMAT
from api.access_log import QuietAccessLogger
from api.app import create_app
from common.logs import configure_logging
from common.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings)
    logging.getLogger("api").info(
        "starting on %s:%s, broker %s", settings.api_host, settings.api_port, settings.rmq_url_masked
    )
    app = create_app(settings)
    # Everything imported and built so far lives as long as the process: out of the collector's
    # sight, a full collection scans only what requests create, not all of Celery and aiohttp.
    gc.freeze()
    web.run_app(
        app,
        host=settings.api_host,
        port=settings.api_port,
        print=None,
        access_log_class=QuietAccessLogger,
        access_log_format=ACCESS_LOG_FORMAT,
    )


if __name__ == "__main__":
    main()
