"""Third-party chatter silenced where it starts, one call site at a time; warnings stay visible.

- :func:`quiet_loading`: around loading a model with a library that logs INFO lines and draws a
  "Loading weights" bar (sentence-transformers on transformers). The named loggers show warnings
  and errors only, and transformers' progress bars are off, for the block only.
- :func:`filter_stderr`: around a call whose child process writes a known status line to the
  inherited stderr (pycocoevalcap's Java PTB tokenizer). Everything written to file descriptor 2
  in the block is written back afterwards, except the lines matching the given patterns.
- :func:`log_once`: a message that several readers of one file would each log (a cut-off last line
  of a predictions file) is logged once per process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_loading(*logger_names: str) -> Iterator[None]:
    """Within the block, the loggers ``logger_names`` drop records below WARNING and transformers'
    tqdm bars are disabled; both are restored on exit."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() < logging.WARNING:
            lg.setLevel(logging.WARNING)
    tf_logging = None
    bars_were_on = False
    if "transformers" in sys.modules:  # only silence it where it is already in use
        from transformers.utils import logging as tf_logging

        bars_were_on = tf_logging.is_progress_bar_enabled()
        if bars_were_on:
            tf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if tf_logging is not None and bars_were_on:
            tf_logging.enable_progress_bar()


@contextlib.contextmanager
def filter_stderr(*patterns: str) -> Iterator[None]:
    """Collect what the block writes to file descriptor 2 (child processes included), then write it
    back without the lines that match one of the regular expressions ``patterns``."""
    compiled = [re.compile(p) for p in patterns]
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [
                line
                for line in sink.read().splitlines(keepends=True)
                if not any(c.search(line.decode(errors="replace")) for c in compiled)
            ]
            if kept:
                os.write(2, b"".join(kept))


_logged: set[tuple] = set()


def log_once(logger: logging.Logger, level: int, msg: str, *args, key: tuple | None = None) -> None:
    """``logger.log(level, msg, *args)`` the first time this process sees ``key`` (default: the
    message and its arguments), then nothing."""
    key = (logger.name, msg, *args) if key is None else key
    if key in _logged:
        return
    _logged.add(key)
    logger.log(level, msg, *args)
