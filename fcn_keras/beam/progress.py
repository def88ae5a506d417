"""Progress of a pipeline run in this process: the workers' ``fcn_keras.beam`` log lines, printed as they come.

The transforms log one INFO line per image segmented or shard written to the
``fcn_keras.beam`` logger; a runner's workers send them to its logs (Dataflow:
Cloud Logging). :func:`printed` shows them on a stream while a pipeline runs
here (the DirectRunner's in-process workers).

Example:
    >>> import io
    >>> stream = io.StringIO()
    >>> with printed(stream):
    ...     logger.info("wrote %s", "shard-00000-of-00001.tfrecord")
    >>> stream.getvalue()
    '  wrote shard-00000-of-00001.tfrecord\\n'
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator, TextIO

logger = logging.getLogger("fcn_keras.beam")


@contextlib.contextmanager
def printed(stream: TextIO | None = None) -> Iterator[None]:
    """Prints ``fcn_keras.beam``'s INFO lines, indented, on ``stream`` (default stdout) within the block.

    Example:
        >>> with printed():
        ...     logger.info("segmented a.jpg")
          segmented a.jpg
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    # Only here: Beam gives the root logger a handler of its own, which would print each line twice.
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
