"""Files holding customer data or secrets (the SQLite store, digests written with `--out`,
the config `cskpi init` writes) are made readable by their owner alone: mode 0600, not the
0644 a umask of 022 gives. SQLite makes its -wal and -shm files with the database file's
mode, so the store's three files are all 0600."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE = 0o600


def create_private(path: Path) -> None:
    """Make the empty file ``path``, 0600; nothing if it exists (a concurrent maker won)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))


def write_private(path: Path, data: str | bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to ``path``, 0600 also when it replaces a file;
    ``exclusive``: :class:`FileExistsError` when ``path`` exists, never overwriting it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, PRIVATE)  # an existing file keeps its mode through O_TRUNC
        file.write(data.encode() if isinstance(data, str) else data)
