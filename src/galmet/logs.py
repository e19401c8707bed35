"""Logging set-up shared by the workflow scripts and the command line."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager


def setup_logging(path: str | os.PathLike | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to stderr and, when given, to ``path`` (a rule's ``log:`` file). Returns the galmet logger."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    return logging.getLogger("galmet")


#: exit code of a job stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130


@contextmanager
def job_errors(*expected: type[BaseException], log: logging.Logger | None = None, interrupted: str = ""):
    """Around a workflow job's work: an ``expected`` error (a data or input problem whose message
    says what to do) is logged as one ERROR line and ends the job with exit code 1, without a
    traceback; Ctrl-C ends it with exit code 130, without a traceback, after the one line
    ``interrupted`` (what is kept, how to resume; empty when the interrupted code logs its own).
    Any other error keeps its traceback."""
    log = log or logging.getLogger("galmet")
    try:
        yield
    except KeyboardInterrupt:
        if interrupted:
            log.error("%s", interrupted)
        sys.exit(INTERRUPTED)
    except expected as exc:
        log.error("%s", exc)
        sys.exit(1)
