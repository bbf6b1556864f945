"""Read the next pages while the current one is being written.

A stream's pages are produced in a background thread into a small bounded queue: an HTTP
connector's next request overlaps the database commit of the previous page, and SQLite
releases the GIL while it works, so even a CPU-bound source (the demo) overlaps. At most
``depth`` pages wait in memory. An exception in the producer is re-raised in the consumer,
at the point in the sequence where it happened.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """Yield ``items`` in order, producing up to ``depth`` ahead in another thread."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as exc:  # handed to the consumer, who decides
            offer(_Failed(exc))
        else:
            offer(_DONE)

    worker = threading.Thread(target=produce, name="cskpi-prefetch", daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)
