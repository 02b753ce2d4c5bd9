"""One log format for every entry point: a line per event, with the task number and worker id."""

import logging

from common.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format=FORMAT)
    # The format shows no source line, thread or process: spare every record looking them up
    # (the "Optimization" table of Python's logging HOWTO). The caller's frame is the dearest.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
