"""``python -m api``: configure logging from the settings and serve the application."""

import gc
import logging

from aiohttp import web

from api.access_log import FORMAT as ACCESS_LOG_FORMAT
from api.access_log import QuietAccessLogger
from api.app import create_app
from common.logs import configure_logging
from common.settings import Settings

# aiormq logs a lost connection as an ERROR with a traceback, and every refused attempt to
# reconnect as another ERROR; the publisher's own line ("lost the connection to …", "broker …
# not reachable (…), retrying in N s") already says what happens. aiormq's other lines (a
# connection blocked by a broker alarm, say) stay.
AIORMQ_REPEATS = (
    "Unexpected connection close",
    "Cancelling cause reader exited abnormally",
    "error when creating transport",
)


def main() -> None:
    settings = Settings.from_env_or_exit()
    configure_logging(settings)
    logging.getLogger("aiormq.connection").addFilter(
        lambda record: not str(record.msg).startswith(AIORMQ_REPEATS)
    )
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
        # With a shared store, several processes may serve one port: Linux spreads the
        # connections over them (SO_REUSEPORT). Never with the memory store: split state.
        reuse_port=settings.shared_store,
        print=None,
        access_log_class=QuietAccessLogger,
        access_log_format=ACCESS_LOG_FORMAT,
    )


if __name__ == "__main__":
    main()
