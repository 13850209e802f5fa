"""Beam DoFns whose elements' work overlaps on threads (`Overlapped`).

Place in the flow: used by the Beam job's two heavy steps, validation
(`beam.validate`) and features (`beam.features`). Their work per element is part
Python (reading records, checks, encoding: holds the GIL) and part TensorFlow
(parse, layer: releases it). Beam runs a bundle's elements one after the other
on one thread, so on a worker one core idled while the other ran Python; with
the next elements submitted to a small pool, one element's Python runs while
another's ops do (the tfdata engine's threads do the same).

Results come back in submission order, on the bundle's thread (Beam's
metrics and outputs belong there); an element's exception is raised there
too, failing the bundle as a synchronous DoFn would. A result leaves with the
window of the element being processed then (or, from `finish_bundle`, the
global window): for the job's data, all in the global window (a batch job).
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable, Iterator

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

THREADS = 2  # elements computed at once by a worker


class Overlapped:
    """Runs `fn(element)` on `threads` threads, at most `in_flight` elements
    submitted and not yet handed back. One per DoFn instance: `open` in
    `setup`, `start` in `start_bundle`, `submit` in `process`, `drain` in
    `finish_bundle`, `close` in `teardown`."""

    def __init__(self, fn: Callable, threads: int = THREADS, in_flight: int = 0):
        self._fn, self._threads = fn, threads
        self._in_flight = in_flight or 2 * threads
        self._pool = None
        self._pending: collections.deque = collections.deque()

    def open(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._threads, thread_name_prefix="seqshards"
        )

    def start(self) -> None:
        self._pending = collections.deque()  # a failed bundle's are dropped

    def submit(self, element) -> Iterator:
        """Submits `element`; yields the results ready in order (waiting for
        the oldest while too many are in flight)."""
        self._pending.append(self._pool.submit(self._fn, element))
        while self._pending and (
            len(self._pending) > self._in_flight or self._pending[0].done()
        ):
            yield self._pending.popleft().result()

    def drain(self) -> Iterator:
        """Every remaining result, in order."""
        while self._pending:
            yield self._pending.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def in_global_window(output):
    """An output of `finish_bundle` (which has no input element to take the
    window from): the value, or a `TaggedOutput`'s, in the global window."""
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, in_global_window(output.value))
    return WindowedValue(output, MIN_TIMESTAMP, [GlobalWindow()])
