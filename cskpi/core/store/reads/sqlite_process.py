"""The process that reads SQLite stores with the ADBC driver (why ADBC: see ``columns.py``).

The driver links its own copy of the SQLite library, and two copies in one process can
corrupt a database (https://www.sqlite.org/howtocorrupt.html, 2.2.1), so the driver is only
ever loaded here: ``python -m cskpi.core.store.reads.sqlite_process``, started on the first
read and ended when the cskpi process that started it ends (its stdin closes). Requests and
answers are pickles over the pipes, each preceded by its length. A plain subprocess rather
than ``multiprocessing``: spawning re-imports the parent's main module, and ``python -m
cskpi`` would run the CLI again.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Generator, Iterator
from typing import IO, Any
from urllib.parse import quote

import numpy as np
from numpy.typing import NDArray

from cskpi.core.store.reads.arrow import (
    ArrowReader,
    Columns,
    is_text,
    labelled,
    numpy_column,
    text_codes,
    transaction,
)

Request = tuple[str, list[str], dict[str, Any]]  # database path, queries, parameters
# Text crosses as codes into its distinct values: pickling an array of objects costs a call
# per value, where a store's text columns (status, priority, agent ids) hold a handful each.
Packed = NDArray[Any] | tuple[NDArray[np.int32], list[str | None]]


class SqliteReader:
    """The client side: one process per cskpi process, serving its threads one read at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def read(self, path: str, queries: list[str], params: dict[str, Any]) -> list[Columns]:
        """The queries' results, read in one snapshot."""
        with contextlib.closing(self.each(path, queries, params)) as results:
            return list(results)

    def each(
        self, path: str, queries: list[str], params: dict[str, Any]
    ) -> Generator[Columns, None, None]:
        """The queries' results in turn as the reader sends them, read in one snapshot: the
        caller works on one while the reader reads the next (close the iterator when done
        with it early). A process that died before answering is replaced once."""
        with self._lock:
            process, (status, answer) = self._ask(path, queries, params)
            finished = False
            try:
                while status == "part":
                    yield [_unpack(column) for column in answer]
                    status, answer = _receive(process.stdout)  # type: ignore[arg-type]
                finished = True
            finally:
                if not finished:  # left mid-answer: the pipe holds the rest
                    self._stop()
            if status == "error":  # the reader's own error, its answer complete
                raise answer

    def _ask(
        self, path: str, queries: list[str], params: dict[str, Any]
    ) -> tuple[subprocess.Popen[bytes], tuple[str, Any]]:
        """Send the request and receive the first message of its answer."""
        for attempt in (1, 2):
            process = self._running()
            try:
                _send(process.stdin, (path, queries, params))  # type: ignore[arg-type]
                return process, _receive(process.stdout)  # type: ignore[arg-type]
            except (OSError, EOFError):  # it had died: nothing was read
                self._stop()
                if attempt == 2:
                    raise
            except BaseException:  # interrupted mid-answer: the pipe holds the rest
                self._stop()
                raise
        raise AssertionError("unreachable")

    def start(self) -> None:
        """Start the process now, ahead of the first read."""
        with self._lock:
            self._running()

    def _running(self) -> subprocess.Popen[bytes]:
        """The process, started now if there is none or it died since the last read."""
        if self._process is not None and self._process.poll() is not None:
            self._stop()
        if self._process is None:
            # The child finds cskpi where this process did (a source checkout, too).
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            self._process = subprocess.Popen(
                [sys.executable, "-m", "cskpi.core.store.reads.sqlite_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        return self._process

    def stop(self) -> None:
        """End the process (the next read starts another)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None


def _send(stream: IO[bytes], value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "little"))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the SQLite reader ended")
    size = int.from_bytes(head, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the SQLite reader ended mid-answer")
    return pickle.loads(data)  # noqa: S301 (our own child process)


def _unpack(column: Packed) -> NDArray[Any]:
    if isinstance(column, np.ndarray):
        return column
    return labelled(*column)


# --- the reading process ------------------------------------------------------------------

_KEEP_OPEN = 4  # read-only connections kept open, newest last
_MMAP_BYTES = 1 << 33  # asked for; SQLite maps at most its compile-time limit
_open: dict[tuple[str, int, int], Any] = {}


def _connection(path: str) -> Any:
    """A read-only connection to ``path``, by file identity: a file replaced at the same
    path (a demo store made anew) is another database."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    info = os.stat(path)
    key = (path, info.st_dev, info.st_ino)
    conn = _open.pop(key, None)
    if conn is None:
        conn = adbc_sqlite.connect(f"file:{quote(path)}?mode=ro")
        with conn.cursor() as cursor:
            # Read the file through a memory map rather than a read() call per page: the
            # KPI reads look up tickets by id at random, a page each (docs/performance.md has
            # the figures). The mapped pages are the kernel's page cache, shared and given
            # back under memory pressure, not this process's own memory. SQLite caps the
            # size at its compile-time limit.
            cursor.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
    _open[key] = conn
    while len(_open) > _KEEP_OPEN:
        _open.pop(next(iter(_open))).close()
    return conn


def read_sqlite(path: str, queries: list[str], params: dict[str, Any]) -> Iterator[list[Packed]]:
    """The queries' results in turn, read in one transaction on a read-only connection."""
    conn = _connection(path)
    with transaction(conn, ()):
        reader = ArrowReader(conn, "?", _pack)
        for sql in queries:
            yield reader.columns(sql, params)  # type: ignore[misc]


def _pack(column: Any) -> Packed:
    return text_codes(column) if is_text(column) else numpy_column(column)


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """Answer requests until the client closes the pipe."""
    while True:
        try:
            path, queries, params = _receive(requests)
        except EOFError:
            return
        try:
            for result in read_sqlite(path, queries, params):
                _send(answers, ("part", result))
                del result
        except Exception as exc:  # the client raises it
            _send(answers, ("error", _picklable(exc)))
        else:
            _send(answers, ("done", None))
        _give_back_memory()


def _give_back_memory() -> None:
    """Return the freed result buffers to the system between reads: the allocators keep
    them for reuse otherwise, and this process would sit on its largest read while its
    parent computes."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # glibc; elsewhere the allocator decides
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _picklable(exc: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group: the parent decides, and this
    # process ends when the parent does (its stdin closes), without a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import adbc_driver_sqlite.dbapi  # noqa: F401  (imported while the parent still imports)

    serve(sys.stdin.buffer, sys.stdout.buffer)
