"""Threads of the tfdata engine: stages that run ahead, maps in order.

Place in the flow: under `pipeline.tfdata.engine` (read, validate, features
overlap: TF ops, numpy and file I/O release the GIL).
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from queue import Empty, Full, Queue

AHEAD = 4  # chunks a stage's thread runs ahead


def ahead(items, name: str, size: int = AHEAD):
    """Iterates `items` in a thread, `size` items ahead of the consumer (the
    stages overlap: TF ops, numpy and file I/O release the GIL). An exception of
    the thread is raised here, at the item where it happened."""
    queue: Queue = Queue(maxsize=size)
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put(("item", item), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(("done", None))
        except BaseException as e:  # handed to the consumer, raised there
            queue.put(("error", e))
        finally:
            if hasattr(items, "close"):
                items.close()  # stops an upstream `ahead` thread too

    thread = threading.Thread(target=produce, name=f"seqshards-{name}", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = queue.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                queue.get_nowait()
            except Empty:
                thread.join(0.05)


def ordered_map(fn, items, workers: int):
    """`map(fn, items)` on a pool of `workers` threads, results in order, at
    most `2 * workers` items in flight."""
    with concurrent.futures.ThreadPoolExecutor(
        workers, thread_name_prefix="seqshards-features"
    ) as pool:
        pending: collections.deque = collections.deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
