"""Logging for the command line and every server process: one format, on stderr."""
from __future__ import annotations

import logging
import sys


def configure_logging(level: int, tag: str = "") -> None:
    """Log lines on stderr, `tag` after the logger's name (a worker process names itself)."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s")
    for noisy in ("py4j", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
