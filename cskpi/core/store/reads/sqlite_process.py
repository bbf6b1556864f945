"""The processes that read and write SQLite stores with the ADBC driver (why: see
columnar.py for the KPI reads, page_store.py for a sync's writes), and write PostgreSQL
stores (``postgres_writes``; why here, see ``_writes``).

The driver links its own copy of the SQLite library, and two copies in one process can
corrupt a database, so the driver is only ever loaded here: ``python -m
cskpi.core.store.reads.sqlite_process``, started on first use (a KPI read; a sync's writer, see
``page_store``) and ended when the cskpi process that started it ends (its stdin closes).
Requests and answers are pickles over the pipes, each preceded by its length. A plain
subprocess rather than ``multiprocessing``: spawning re-imports the parent's main module,
and ``python -m cskpi`` would run the CLI again. The writes themselves are
``sqlite_writes.py``.
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
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

import numpy as np
from numpy.typing import NDArray

from cskpi.core.store import sqlite_writes
from cskpi.core.store.reads.arrow import (
    ArrowReader,
    Columns,
    is_text,
    labelled,
    numpy_column,
    text_codes,
    transaction,
)
from cskpi.core.store.sqlite_writes import Statement

# ("read", database path, queries, parameters), ("write" or "write-next", path, tables,
# statements) or ("close", path, [], None)
Request = tuple[str, str, list[Any], Any]
# Text crosses as codes into its distinct values: pickling an array of objects costs a call
# per value, where a store's text columns (status, priority, agent ids) hold a handful each.
Packed = NDArray[Any] | tuple[NDArray[np.int32], list[str | None]]


class SqliteWorker:
    """The client side: one worker per process, serving its threads one read at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def read(self, path: str, queries: list[str], params: dict[str, Any]) -> list[Columns]:
        """The queries' results, read in one snapshot; a worker that died is replaced once."""
        return self._ask(("read", path, queries, params), again=True)

    def start(self) -> None:
        """Start the process now unless it runs (else the first request starts it): a sync
        starts its writer before making its first page, so that the interpreter's start-up
        runs beside it."""
        with self._lock:
            self._running()

    def send_write(self, request: bytes) -> None:
        """Send a write made by ``write_request`` and return at once: ``answer`` collects
        the answers, in order. Whoever sends writes owns this worker meanwhile (see
        ``page_store``): a read would take a write's answer for its own."""
        with self._lock:
            process = self._running()
            try:
                _send_bytes(process.stdin, request)  # type: ignore[arg-type]
            except OSError:
                self._stop()
                raise

    def answer(self) -> None:
        """Wait for the oldest write's answer; raise its error. A worker that ended is not
        asked again, as the write may have committed (the sync's next run resumes from
        whatever cursor did)."""
        with self._lock:
            if self._process is None:
                raise EOFError("the SQLite worker ended")
            try:
                answer = _results(self._process.stdout)  # type: ignore[arg-type]
            except BaseException:
                self._stop()
                raise
        if isinstance(answer, Exception):
            raise answer

    def close(self, path: str) -> None:
        """Close the worker's write connection to ``path`` (a file, or a PostgreSQL URL),
        if it has one (a sync is over: on SQLite the last connection to close checkpoints
        the WAL into the database file)."""
        if self._process is not None and self._process.poll() is None:  # alive: it may
            self._ask(("close", path, [], None), again=False)

    def _ask(self, request: Request, again: bool) -> list[Columns]:
        with self._lock:
            for attempt in (1, 2):
                process = self._running()
                try:
                    _send(process.stdin, request)  # type: ignore[arg-type]
                except OSError:  # it had died: nothing of this request reached it
                    self._stop()
                    if attempt == 2:
                        raise
                    continue
                try:
                    answer = _results(process.stdout)  # type: ignore[arg-type]
                except EOFError:
                    self._stop()
                    if attempt == 2 or not again:
                        raise
                    continue
                except BaseException:  # interrupted mid-answer: the pipe holds the rest
                    self._stop()
                    raise
                if isinstance(answer, Exception):  # the worker's own error, answer complete
                    raise answer
                return answer
        raise AssertionError("unreachable")

    def _running(self) -> subprocess.Popen[bytes]:
        """The process, started now if there is none or it died since the last request
        (the lock held)."""
        if self._process is not None and self._process.poll() is not None:
            self._stop()
        return self._process or self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        # The child finds cskpi where this process did (a source checkout, too).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "cskpi.core.store.reads.sqlite_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        # A page of a sync (about 0.5 MB) fits in one pipe write: each partial write would
        # wait for the interpreter lock again, which the thread making the next page holds.
        with contextlib.suppress(OSError, AttributeError, ImportError):  # Linux only
            import fcntl

            fcntl.fcntl(self._process.stdin.fileno(), fcntl.F_SETPIPE_SZ, 2**20)  # type: ignore[union-attr]
        return self._process

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None


def write_request(
    store: str, work: list[Any], statements: list[Statement], after_previous: bool
) -> bytes:
    """A write for ``send_write``, made ready ahead (pickling it is not free), to the SQLite
    file or the PostgreSQL URL ``store``. In one write transaction: ``work`` stored (a
    SQLite file: each Arrow table appended to the temporary table of its name, made on first
    use; PostgreSQL: ``postgres_writes.Batch``es), the statements run (``:name`` binds).
    A write ``after_previous`` is refused unless the previous write succeeded: writes are
    sent before the previous answer is read, and a page must not commit its cursor past a
    page that failed."""
    kind = "write-next" if after_previous else "write"
    return pickle.dumps((kind, store, work, statements), protocol=pickle.HIGHEST_PROTOCOL)


def _results(answers: IO[bytes]) -> list[Columns] | Exception:
    """One query's result after another (so neither side holds them all twice), until
    "done"; an error from the worker ends the answer early and is returned."""
    results: list[Columns] = []
    while True:
        status, answer = _receive(answers)
        if status == "done":
            return results
        if status == "error":
            return answer  # type: ignore[no-any-return]
        results.append([_unpack(column) for column in answer])


def _send(stream: IO[bytes], value: object) -> None:
    _send_bytes(stream, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _send_bytes(stream: IO[bytes], data: bytes) -> None:
    stream.write(len(data).to_bytes(8, "little"))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the SQLite worker ended")
    size = int.from_bytes(head, "little")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the SQLite worker ended mid-answer")
    return pickle.loads(data)  # noqa: S301 (our own child process)


# --- the worker side ----------------------------------------------------------------------


def _open_read_only(path: str) -> Any:
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    return adbc_sqlite.connect(f"file:{quote(path)}?mode=ro")


_readers: sqlite_writes.ByFile[Any] = sqlite_writes.ByFile(_open_read_only)


def read_sqlite(path: str, queries: list[str], params: dict[str, Any]) -> Iterator[list[Packed]]:
    """The queries' results in turn, read in one transaction on a read-only connection."""
    conn = _readers.get(path)
    with transaction(conn, ()):
        reader = ArrowReader(conn, "?", _pack)
        for sql in queries:
            yield reader.columns(sql, params)  # type: ignore[misc]


def _pack(column: Any) -> Packed:
    return text_codes(column) if is_text(column) else numpy_column(column)


def _unpack(column: Packed) -> NDArray[Any]:
    if isinstance(column, np.ndarray):
        return column
    return labelled(*column)


class _SkippedError(RuntimeError):
    """A write sent after one that failed, left undone."""


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """Answer requests until the client closes the pipe."""
    failed = False  # the last write failed: the writes sent after it are refused
    while True:
        try:
            kind, path, work, params = _receive(requests)
        except EOFError:
            return
        try:
            if kind.startswith("write"):
                if kind == "write-next" and failed:
                    raise _SkippedError("not written: an earlier page of this sync failed")
                failed = True
                _writes(path).write(path, work, params)
                failed = False
            else:
                _handle(kind, path, work, params, answers)
        except Exception as exc:  # the client raises it
            _send(answers, ("error", _picklable(exc)))
        else:
            _send(answers, ("done", None))
        if kind == "read":
            _give_back_memory()


def _handle(kind: str, path: str, work: list[Any], params: Any, answers: IO[bytes]) -> None:
    if kind == "close":
        _writes(path).close(path)
    else:
        for result in read_sqlite(path, work, params):
            _send(answers, ("part", result))
            del result


def _writes(store: str) -> Any:
    """What writes the store: a SQLite file's path, or a PostgreSQL URL. PostgreSQL's
    writes run here too, though its driver could share the cskpi process: there the thread
    making the next pages holds the interpreter lock, and a writer thread waited for it
    after each of the driver's calls (up to 5 ms, the switch interval). Demo sync of
    200,000 tickets: 9,095 tickets/s from a thread, 10,843 and 10,991 from this process."""
    if store.startswith("postgresql"):
        from cskpi.core.store import postgres_writes  # it loads SQLAlchemy: only when needed

        return postgres_writes
    return sqlite_writes


def _give_back_memory() -> None:
    """Return the freed result buffers to the system between reads: the allocators keep
    them for reuse otherwise, and this process would sit on its largest read (80 MB on the
    benchmark) while its parent computes."""
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
    serve(sys.stdin.buffer, sys.stdout.buffer)
