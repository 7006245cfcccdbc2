"""Checks before training starts: the output folder exists or can be made, is writable, and has room;
Hydra-built parts of the config raise typed errors naming the node.

Each failure raises :class:`OutputDirError` naming the folder, before any model is built.
Writability is tested by writing and removing a small file (``os.access`` says yes to root on a
read-only mount).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path


class OutputDirError(OSError):
    """The run folder cannot hold the run (not creatable, read-only, or too little free space)."""


def check_output_dir(path: str | Path, *, min_free_gb: float = 0.0) -> Path:
    """Create ``path`` if needed and check it is writable with ``min_free_gb`` GB free. Returns it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(e.errno, f"trainer.output_dir {path} cannot be created: {e.strerror or e}") from e
    try:
        fd, probe = tempfile.mkstemp(prefix=".pam-write-test-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise OutputDirError(e.errno, f"trainer.output_dir {path} is not writable: {e.strerror or e}") from e
    if min_free_gb > 0:
        free = shutil.disk_usage(path).free / 1e9
        if free < min_free_gb:
            raise OutputDirError(
                errno.ENOSPC,
                f"trainer.output_dir {path} has {free:.2f} GB free, "
                f"less than trainer.checkpoint.min_free_disk_gb={min_free_gb:g}; "
                "free some space or lower trainer.checkpoint.min_free_disk_gb",
            )
    return path


def instantiate_config(node, name: str, *, build=None, **kwargs):
    """``hydra.utils.instantiate(node)`` (or ``build()``); a ValueError or TypeError from the target
    (an unknown option, a wrong type, an out-of-range value) becomes a ConfigError naming the node."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from ..data.schema import SchemaError
    from ..utils.config import ConfigError

    try:
        return build() if build is not None else instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, (ValueError, TypeError)) and not isinstance(cause, (SchemaError, ConfigError)):
            raise ConfigError(f"config `{name}`: {cause}") from e
        if isinstance(cause, Exception):
            raise cause from e
        raise
