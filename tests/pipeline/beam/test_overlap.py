"""overlap.Overlapped: elements computed on threads, results in input order."""

import threading
import time

import apache_beam as beam
import pytest
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.beam import overlap


def test_results_come_back_in_input_order_with_a_bounded_backlog():
    threads = set()

    def slow_first(x):
        threads.add(threading.current_thread().name)
        time.sleep(0.05 if x == 0 else 0.0)  # the first finishes last
        return x * 10

    o = overlap.Overlapped(slow_first, threads=2, in_flight=3)
    o.open()
    try:
        o.start()
        got = []
        for x in range(10):
            got += list(o.submit(x))
            assert len(o._pending) <= 3
        got += list(o.drain())
    finally:
        o.close()
    assert got == [x * 10 for x in range(10)]
    assert all(name.startswith("seqshards") for name in threads)


def test_an_element_failure_is_raised_when_its_result_is_taken():
    def fail_on_two(x):
        if x == 2:
            raise ValueError("bad element 2")
        return x

    o = overlap.Overlapped(fail_on_two, threads=2, in_flight=8)
    o.open()
    try:
        o.start()
        got = []
        with pytest.raises(ValueError, match="bad element 2"):
            for x in range(4):
                got += list(o.submit(x))
            got += list(o.drain())
        assert got in ([], [0], [0, 1])  # the ones before it, nothing after
        o.start()  # a new bundle starts clean
        assert list(o.submit(7)) + list(o.drain()) == [7]
    finally:
        o.close()


def test_finish_bundle_outputs_are_put_in_the_global_window():
    plain = overlap.in_global_window("x")
    assert isinstance(plain, WindowedValue) and plain.value == "x"
    tagged = overlap.in_global_window(beam.pvalue.TaggedOutput("errors", "e"))
    assert tagged.tag == "errors" and tagged.value.value == "e"
