import threading

import pytest

from cskpi.core.prefetch import prefetch


def test_yields_everything_in_order() -> None:
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_an_error_arrives_after_the_items_before_it() -> None:
    def items():
        yield 1
        yield 2
        raise KeyError("page 3")

    it = prefetch(items())
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(KeyError, match="page 3"):
        next(it)


def test_never_more_than_depth_items_ahead() -> None:
    produced = []
    release = threading.Event()

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    it = prefetch(items(), depth=2)
    assert next(it) == 0
    release.wait(0.3)  # give the producer time to run ahead as far as it may
    # one handed out, two queued, one in the producer's hand waiting for a slot
    assert len(produced) <= 4
    assert list(it) == list(range(1, 10))


def test_a_consumer_that_stops_early_stops_the_producer() -> None:
    def items():
        yield from range(1_000_000)

    it = prefetch(items(), depth=2)
    assert next(it) == 0
    it.close()
    assert not any(t.name == "cskpi-prefetch" and t.is_alive() for t in threading.enumerate())
