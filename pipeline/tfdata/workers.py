"""Worker processes of the tfdata engine's main pass: chunks validated and
featurized beside the main process, each under its own GIL.

Place in the flow: read (main process) -> **decode/validate -> features**
(`ChunkWorkers`: a worker process per core) -> drop duplicate ids, bucket,
batches, write (main process, in reading order).

In one process the engine's Python (validation's per-record lists, the
parse's and the layer's call overhead, bucketing, record building) runs under
one GIL: on 2 cores it kept ~1.3 busy. Here the main process reads the
records (framing, CRC) and sends each chunk's bytes to worker `k % W` (chunk
k: the order is fixed, whatever the timing); the worker runs the same
functions the in-process path runs (`validate.validate_decoded`,
`FeatureComputer.flat_rows`, `worker_loop.build_stages` from one config), so the
output is byte-identical with any number of workers. The features come back
through shared memory (`Slot`: a file in /dev/shm mapped by both processes,
reused chunk after chunk): the main process copies them once, into its
batches' blocks (`batches.fill`), then frees the slot. What comes back by
pickling is small: lengths, positions, ids, context values, dead letters.
The valid records' bytes are not sent back (the main process has them),
except those truncated under `--on_long truncate`.

Memory: `SLOTS` slots of at most `SLOT_BYTES` per worker (a chunk whose rows
do not fit comes back pickled); each worker holds TensorFlow and the layer
(~0.8 GB RSS measured at 200k), the writer process TensorFlow (~0.65 GB).
"""

from __future__ import annotations

import os
import pickle
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from pipeline.tfdata import worker_start
from pipeline.tfdata.threads import ahead
from pipeline.tfdata.worker_loop import Slot

CHUNK = 2048  # records per chunk sent to a worker (less per-chunk work here)
SLOTS = 3  # chunks in flight per worker (their rows in shared memory)
SLOT_BYTES = 48 << 20  # one chunk's rows; larger ones come back pickled
MAX_WORKERS = 8  # each holds TensorFlow and the layer: ~0.8 GB RSS
WORKER_BYTES = 1 << 30  # memory set aside per worker ("auto")
RESERVED_BYTES = 2 << 30  # and for this process, before any worker
MIN_INPUT_BYTES = 16 << 20  # smaller inputs: in-process (start-up ~4 s)
# Fewer cores: in-process. On a quiet 2-core machine (200k bench data,
# `run_bench.py --scaling_only --repeat 3`, 2026-12-07 16:12 UTC) two workers
# scaled 1.83x from 1 core to 2 (parallel fraction 0.91) against 1.53x (0.69)
# in one process, but ran no faster on 2 cores (26,492 vs 26,368 examples/s
# marginal) and slower on 1 (14,454 vs 17,230); their gain is from 4 cores on.
MIN_CORES = 4


def worker_count(
    total_bytes: int,
    requested: int | None = None,
    cores: int | None = None,
    memory_bytes: int | None = None,
) -> int:
    """Workers for an input of `total_bytes` (`--tfdata_workers`): `requested`
    if given (0: none); for None ("auto", the default) one per core this
    process may use, at most `MAX_WORKERS` and as many as the available
    memory holds (`WORKER_BYTES` each beside `RESERVED_BYTES`); none below
    `MIN_CORES` cores or for a small input (`MIN_INPUT_BYTES`), where they
    cost more than they save."""
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    if cores < MIN_CORES or total_bytes < MIN_INPUT_BYTES:
        return 0
    memory_bytes = available_memory() if memory_bytes is None else memory_bytes
    fits = max(0, (memory_bytes - RESERVED_BYTES) // WORKER_BYTES)
    return min(cores, MAX_WORKERS, fits)


def available_memory() -> int:
    """Bytes of physical memory available now (MemAvailable), or the total
    if /proc/meminfo is unreadable."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class Rows(NamedTuple):
    """Where a chunk's features are: float32 [n, depth] in `slot` of worker
    `worker` (`array` None), or pickled (`array`)."""

    worker: int
    slot: int
    shape: tuple[int, int]
    array: np.ndarray | None


def _shared_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


class ChunkWorkers:
    """`count` worker processes (`serve`) and their slots; `checked` runs
    them over the chunks. Use as a context manager (stops them, frees the
    shared memory). `quiet`: TensorFlow's start-up lines of the workers kept
    off stderr (`worker_start`)."""

    def __init__(
        self, count: int, *, config, spec, embedding_weights, files, quiet=True
    ):
        if count < 1:
            raise ValueError(
                "Invalid value for argument `count`. Expected an int >= 1. "
                f"Received: count={count!r}"
            )
        setup = pickle.dumps((config, spec, dict(embedding_weights or {}), list(files)))
        self._dir = tempfile.mkdtemp(prefix="seqshards-rows-", dir=_shared_dir())
        self._procs, self._conns, self._slots, self._free = [], [], [], []
        self._theirs: list = []  # the workers' ends of the pipes
        self._setup: threading.Thread | None = None
        context = worker_start.context()
        try:
            for w in range(count):
                paths = [f"{self._dir}/worker{w}-slot{s}" for s in range(SLOTS)]
                slots = [Slot(p, SLOT_BYTES, create=True) for p in paths]
                self._slots.append(slots)
                free: queue.Queue = queue.Queue()
                for s in range(SLOTS):
                    free.put(s)
                self._free.append(free)
                ours, theirs = context.Pipe()
                self._procs.append(
                    context.Process(
                        target=worker_start.start,
                        args=(
                            "pipeline.tfdata.worker_loop",
                            "serve",
                            (theirs, paths, SLOT_BYTES),
                            quiet,
                        ),
                        name=f"seqshards-worker-{w}",
                        daemon=True,
                    )
                )
                self._conns.append(ours)
                self._theirs.append(theirs)
        except BaseException:
            self.close()
            raise
        # Started on a thread, while this process goes on (`wait_ready`): the
        # first start waits for the forkserver's imports. The setup goes
        # through the pipe, not the processes' arguments: a worker that dies
        # at start-up breaks its pipe instead of blocking.
        self._setup = threading.Thread(
            target=self._start, args=(setup,), name="seqshards-setup"
        )
        self._setup.start()

    def _start(self, setup: bytes) -> None:
        for proc, theirs in zip(self._procs, self._theirs, strict=True):
            proc.start()
            theirs.close()
        for conn in self._conns:
            try:
                conn.send_bytes(setup)
            except OSError:
                pass  # the worker died: `_receive` says so

    def __enter__(self) -> ChunkWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _receive(self, w: int):
        try:
            return self._conns[w].recv()
        except EOFError:
            self._procs[w].join(5)
            raise RuntimeError(
                f"Worker process {w} of the tfdata engine exited (code "
                f"{self._procs[w].exitcode}) before answering: see its error "
                "above, or the system log if it was killed (out of memory?)"
            ) from None

    def wait_ready(self) -> None:
        """Waits until every worker has built its stages (raises its error)."""
        self._setup.join()
        for w in range(len(self._conns)):
            kind, _ = self._receive(w)
            if kind != "ready":
                raise RuntimeError(f"Worker process {w}: unexpected {kind!r}")

    def checked(self, chunks) -> Iterator[tuple]:
        """Yields (chunk, read errors, bytes read, (Checked, Valid, rows) or
        None, `Rows` or None) for `chunks` ((chunk, read errors, bytes read),
        in reading order), in that order; `release` each `Rows` once its
        features are copied. A worker's error is raised at its chunk."""
        sent = ahead(self._send(chunks), "dispatch", SLOTS * len(self._conns))
        try:
            for chunk, read_errors, nbytes, w, slot in sent:
                if w is None:
                    yield chunk, read_errors, nbytes, None, None
                    continue
                status, reply = self._receive(w)
                if status == "error":
                    raise reply
                slim, valid, shape, array = reply
                original = dict(chunk)
                slim = slim._replace(
                    valid=[
                        (p, n, original[p] if data is None else data)
                        for p, n, data in slim.valid
                    ]
                )
                rows = np.arange(len(slim.valid), dtype=np.int64)
                yield (
                    chunk,
                    read_errors,
                    nbytes,
                    (slim, valid, rows),
                    Rows(w, slot, tuple(shape), array),
                )
        finally:
            for free in self._free:  # a `_send` waiting for a slot stops
                free.put(None)
            sent.close()

    def _send(self, chunks):
        """Sends each non-empty chunk to worker k % W once it has a free slot
        (on the dispatch thread); yields (chunk, read errors, bytes read,
        worker or None, slot), in order."""
        k = 0
        for chunk, read_errors, nbytes in chunks:
            if not chunk:
                yield chunk, read_errors, nbytes, None, None
                continue
            w = k % len(self._conns)
            k += 1
            slot = self._free[w].get()
            if slot is None:  # `checked` stopped
                return
            self._conns[w].send((slot, chunk))
            yield chunk, read_errors, nbytes, w, slot

    def rows(self, ref: Rows) -> np.ndarray:
        """The features `ref` points at (a view of its slot, until `release`)."""
        if ref.array is not None:
            return ref.array
        return self._slots[ref.worker][ref.slot].view(ref.shape)

    def release(self, ref: Rows) -> None:
        """Frees `ref`'s slot for the worker's next chunk."""
        self._free[ref.worker].put(ref.slot)

    def close(self) -> None:
        """Stops the workers (waits for them) and frees the shared memory."""
        if self._setup is not None:
            self._setup.join()
        started = [proc for proc in self._procs if proc.pid is not None]
        for proc in started:  # idle or failed: nothing of theirs to keep
            proc.terminate()
        for proc in started:
            proc.join()
        for conn in self._conns + self._theirs:
            conn.close()
        for slots in self._slots:
            for slot in slots:
                try:
                    slot.close()
                except BufferError:  # a view still held: unmapped when freed
                    pass
        shutil.rmtree(self._dir, ignore_errors=True)
        self._procs, self._conns, self._slots = [], [], []
