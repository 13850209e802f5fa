"""The single-machine engine (`--engine tfdata`): the same stages without Beam.

Place in the flow: read -> decode/validate -> bucket -> features -> write ->
metadata, like the Beam job, sharing its stages (`pipeline.stages`). The
stages overlap in threads: files are read by `tfrecord.read_file` (so damage
becomes dead letters); each chunk of records is decoded and validated in one
vectorized call (`validate.validate_decoded`, parsed once; `chunks`); the main
thread drops duplicate ids and gives each example its batch and rows in a
block (`batches.BatchAssigner`: 256 KiB blocks of rows, reused), with no data
copied; a pool of two threads computes each chunk's features in one layer
call as flat rows [steps, D] (`FeatureComputer.flat_rows`) and gathers them,
sorted by bucket, into those rows (`batches.fill`); a writer thread
(`ShardWriter`) writes full batches in order, each record from views of the
blocks plus shared zeros for the padding (`batch_format.padded_blocks`,
`output.RecordWriter`): a step is copied once between the layer and the file.

Order: batches are written in the order of the example completing them, as if
examples joined their bucket's batch one by one; remainders are flushed at the
end, bucket by bucket (only a bucket's last batch is short). Batch k goes to
shard `output.shard_of(k)`. With `--bucket_boundaries auto` a first, light
pass (`lengths`) computes the length histogram. With `--static_shapes` the
first pass validates (`static_shapes.valid_examples`: the plan needs the exact
examples), each batch is padded to its bucket's T, and the remainders are
batched together at the end (`static_shapes.remainder_batches`) or dropped.
Files are read one after the other, records in file order, so the first
record of an example id met is the one at the smallest position: later ones
are `duplicate_id` dead letters, like in the Beam job. The ids seen are not
kept: the first pass (`lengths`, run with an id feature even for explicit
boundaries) finds the fingerprints of ids met more than once (`ids`), and the
main pass looks up only those ids (with `--static_shapes`, whose first pass
keeps every valid example's position anyway, all ids seen are kept).
Progress lines go to stderr (`stages.progress`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import gc
import operator
from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.stages import (
    bucket,
    decode,
    features,
    fileio,
    metadata,
    output,
    progress,
    static_shapes,
    tfrecord,
    validate,
)
from pipeline.stages.bucket import BucketPlan
from pipeline.tfdata import lengths, shard_files, worker_loop, workers
from pipeline.tfdata import static_shapes as static_batches
from pipeline.tfdata.batches import BatchAssigner, Blocks, OpenBatch, fill
from pipeline.tfdata.chunks import checked_chunks, drop_duplicates, read_all
from pipeline.tfdata.threads import ahead, ordered_map

FEATURE_THREADS = 2  # chunks whose features are computed at once
IN_FLIGHT = 8  # full batches waiting for the writer thread
_LENGTH = operator.itemgetter(1)  # of a valid record (position, length, bytes)


def trace(decoder: decode.Decoder, computer: features.FeatureComputer | None) -> None:
    """Traces the engine's tf.functions ahead of their first chunk (their input
    signatures are fixed: one trace each, the one they would take anyway);
    `computer` None: the layer is not called in this process (workers)."""
    decoder.parse.get_concrete_function()
    if computer is not None:
        computer.trace()


def _fewer_collections(run):
    """Runs `run` with the GC's young generation collected every 50,000
    allocations instead of 700: the engine allocates many short-lived
    containers (a tuple per record, lists per chunk) and each collection stops
    every thread; at 200k, 0.2 s of collections instead of 0.9 s (~450 of
    them). Containers that die young are freed by reference counting anyway."""

    @functools.wraps(run)
    def wrapped(*args, **kwargs):
        old = gc.get_threshold()
        gc.set_threshold(50_000, *old[1:])
        try:
            return run(*args, **kwargs)
        finally:
            gc.set_threshold(*old)

    return wrapped


class ShardWriter:
    """The shard files, written in the order batches are handed over by one
    thread (file writes release the GIL; the CRC32C, over numpy views, holds
    it: one pass a record, `RecordWriter`), here (`ShardFiles`) or, with
    `process`, through a writer process (`shard_files.WriterProcess`: the
    thread only sends each batch). Batch k goes to shard `output.shard_of(k)`.
    After `close`: what it wrote (`totals`, `entries`, `shapes`: {(B, T):
    batches})."""

    def __init__(
        self,
        directory: str,
        num_shards: int,
        compression: str,
        computer: features.FeatureComputer,
        blocks: Blocks,
        process: bool = False,
    ):
        self._blocks = blocks
        if process:
            self._sink = shard_files.WriterProcess(
                directory, num_shards, compression, computer.record_maker()
            )
        else:
            self._sink = shard_files.ShardFiles(
                directory, num_shards, compression, computer.record_pieces
            )
        self._counts: shard_files.ShardCounts | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="seqshards-write"
        )
        self._in_flight: collections.deque = collections.deque()

    def _write(self, batch: OpenBatch) -> None:  # on the writer thread, in order
        self._sink.write(batch.contents(), batch.length)
        for block in batch.blocks():
            self._blocks.put(block)

    def hand_over(
        self, batch: OpenBatch | None, limit: int = IN_FLIGHT, *, tail=None
    ) -> None:
        """Queues `batch` (or `tail`: (contents, T) of a static remainder
        batch) for writing; raises a failed write's error; waits while more
        than `limit` batches are queued (their memory)."""
        if batch is not None:
            self._in_flight.append(self._thread.submit(self._write, batch))
        if tail is not None:
            self._in_flight.append(self._thread.submit(self._sink.write, *tail))
        while self._in_flight and (
            self._in_flight[0].done() or len(self._in_flight) > limit
        ):
            self._in_flight.popleft().result()

    def close(self) -> None:
        """Stops the thread (queued batches not yet written are dropped: call
        `hand_over(None, 0)` first to wait for them) and closes the files."""
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._counts is None:
            self._counts = self._sink.close()

    @property
    def totals(self) -> metadata.Totals:
        return self._counts.totals

    @property
    def shapes(self) -> dict:
        return self._counts.shapes

    def checksums(self) -> dict[str, tuple[int, str]]:
        """`{shard file: (size, CRC32C)}` computed as they were written
        (metadata.json's `files` need not read them back); after `close`."""
        return self._counts.checksums

    def entries(self) -> list[dict]:
        """metadata.json's `shards`, in shard order."""
        return self._counts.entries()


class _Counts:
    """What the main pass counts besides the batches: dead letters by reason,
    records per file, truncated positions, lengths written."""

    def __init__(self):
        self.errors: dict[str, list] = collections.defaultdict(list)
        self.records_per_file: collections.Counter = collections.Counter()
        self.truncated: list = []
        self.lengths: collections.Counter = collections.Counter()

    def add(self, chunk, read_errors, checked, work) -> None:
        for e in read_errors:
            self.errors[e.reason.value].append(e)
            self.records_per_file[e.position[0]] += 1
        _, bad, cut, _, _ = checked
        self.truncated.extend(cut)
        for e in bad:
            self.errors[e.reason.value].append(e)
        if chunk and chunk[0][0][0] == chunk[-1][0][0]:  # one file (`read_all`)
            self.records_per_file[chunk[0][0][0]] += len(chunk)
        else:
            self.records_per_file.update(position[0] for position, _ in chunk)
        if work is not None:
            self.lengths.update(work[2].tolist())


class Engine:
    """One run of the job in this process: `plan`, then `materialize`."""

    def __init__(self, *, config, spec, files: Sequence[str], embedding_weights):
        self.config, self.files = config, list(files)
        stages = worker_loop.build_stages(config, spec, embedding_weights)
        self.record_spec, self.decoder, self.policy, self.computer = stages
        self.total_bytes = sum(tfrecord.file_size(f) for f in self.files)
        self.pool: workers.ChunkWorkers | None = None  # main pass's, if any
        self.repeated: np.ndarray | None = None  # the first pass's (`ids`)
        # --static_shapes: positions and lengths of the valid examples.
        self.valid: tuple[np.ndarray, np.ndarray] | None = None

    def _reporter(self, label: str) -> progress.Progress | None:
        if not self.config.progress:
            return None
        return progress.Progress(label, total_bytes=self.total_bytes)

    def plan(self) -> BucketPlan:
        """The bucket plan; with `auto` boundaries from the lengths pass,
        which also finds the repeated ids (`self.repeated`): it runs whenever
        there are boundaries to find or ids to check. With `--static_shapes`
        the plan comes from the valid examples (`self.valid`) instead, and
        duplicate ids are looked up among all ids seen (`repeated` None).

        Tracing the parser and the layer (~1 s of Python, no data needed) runs
        while the lengths pass keeps TF's threads busy (with worker processes
        the parser only: they trace their own layer).
        """
        config = self.config
        # With worker processes the features are computed there (they trace
        # their own layer): this process never calls it.
        layer = None if self.pool is not None else self.computer
        with concurrent.futures.ThreadPoolExecutor(1) as tracer:
            traced = tracer.submit(trace, self.decoder, layer)
            histogram = {}
            auto = config.bucket_boundaries == "auto"
            with_ids = self.record_spec.id_feature is not None
            if (auto or with_ids) and not config.static_shapes:
                found = lengths.first_pass(
                    self.files,
                    self.record_spec,
                    lambda: self._reporter("lengths pass" if auto else "ids pass"),
                    self.policy,
                )
                self.repeated = found.repeated
                histogram = found.histogram if auto else {}
            traced.result()
        if config.static_shapes:
            self.valid = static_batches.valid_examples(
                self.files,
                self.decoder,
                self.record_spec,
                self.policy,
                self._reporter("lengths pass"),
            )
            histogram = static_batches.histogram(self.valid[1])
        return static_shapes.make_plan(
            histogram,
            config.bucket_boundaries,
            config.batch_size,
            max_buckets=config.max_buckets,
            static_shapes=config.static_shapes,
            drop_remainder=config.drop_remainder,
        )

    def _assigned(self, assigner: BatchAssigner):
        """Validated chunks, duplicates dropped, examples given their batches
        (main thread, in order: the first position of an id wins)."""
        first_ids = validate.FirstIdWins()
        for chunk, read_errors, nbytes, result, ref in self._checked():
            starts = fps = None
            if ref is not None:  # the worker's rows: every valid record's
                every = np.fromiter(map(_LENGTH, result[0].valid), np.int64)
                starts, fps = np.cumsum(every) - every, result[1].fingerprints
            checked = drop_duplicates(
                self.record_spec, result, self.files, first_ids, self.repeated, fps
            )
            valid, _, _, decoded, rows = checked
            work, full = None, []
            if valid:
                lengths_ = np.fromiter(map(_LENGTH, valid), np.int64, len(valid))
                order, fills, full = assigner.assign(lengths_, decoded, rows)
                starts = None if starts is None else starts[rows]
                work = (decoded, rows, lengths_, order, fills, ref, starts)
            elif ref is not None:
                self.pool.release(ref)
            yield chunk, read_errors, nbytes, checked, full, work

    def _checked(self):
        """(chunk, read errors, bytes, validated chunk, `workers.Rows` or
        None): on the worker processes if any, else on threads here."""
        if self.pool is not None:
            chunks = read_all(self.files, workers.CHUNK)
            return self.pool.checked(ahead(chunks, "read"))
        return (
            (*item, None)
            for item in checked_chunks(
                self.files, self.decoder, self.record_spec, self.policy
            )
        )

    def _features_of(self, item):  # one layer call per chunk (thread pool)
        if item[5] is None:
            return item
        decoded, rows, lengths_, order, fills, ref, starts = item[5]
        if ref is None:
            fill(
                self.computer.flat_rows(decoded, rows, lengths_), lengths_, order, fills
            )
            return item
        try:  # the worker's rows: copied to the blocks, then its slot freed
            fill(self.pool.rows(ref), lengths_, order, fills, starts)
        finally:
            self.pool.release(ref)
        return item

    def materialize(self, plan: BucketPlan, writer: ShardWriter, blocks: Blocks):
        """The main pass: every batch handed to `writer`; returns the `_Counts`."""
        assigner = BatchAssigner(
            self.config.batch_size, plan.boundaries, blocks, plan.lengths
        )
        counts = _Counts()
        report = self._reporter("materialize")
        # A batch completed by chunk k's examples holds examples of chunks
        # <= k only: all filled once chunk k's features are (results in order).
        for chunk, read_errors, nbytes, checked, full, work in ordered_map(
            self._features_of, self._assigned(assigner), FEATURE_THREADS
        ):
            counts.add(chunk, read_errors, checked, work)
            for batch in full:
                writer.hand_over(batch)
            if report:
                report.add(len(chunk) + len(read_errors), nbytes)
        if not plan.lengths:
            for batch in assigner.remainders():  # each bucket's short last batch
                writer.hand_over(batch)
        elif not self.config.drop_remainder:  # static: remainders batched together
            parts = [batch.contents() for batch in assigner.remainders()]
            for contents in static_batches.remainder_batches(parts, plan.batch_size):
                t = static_shapes.batch_length(
                    contents[1], plan.boundaries, plan.lengths
                )
                writer.hand_over(None, tail=(contents, t))
        writer.hand_over(None, 0)
        if report:
            report.done()
        return counts


@_fewer_collections
def run(
    *,
    config,
    spec,
    files: Sequence[str],
    directory: str,
    num_shards: int,
    embedding_weights: Mapping,
    info: metadata.StaticInfo,
) -> dict:
    """Runs the whole job in this process, writing into `directory` (staging).

    Returns:
      The metadata dict (also written to directory/metadata.json).
    """
    engine = Engine(
        config=config, spec=spec, files=files, embedding_weights=embedding_weights
    )
    count = workers.worker_count(engine.total_bytes, config.tfdata_workers)
    with contextlib.ExitStack() as stack:
        if count:  # the worker processes start while the first pass runs
            engine.pool = stack.enter_context(
                workers.ChunkWorkers(
                    count,
                    config=config,
                    spec=spec,
                    embedding_weights=embedding_weights,
                    files=engine.files,
                )
            )
        blocks = Blocks(engine.computer.depth)
        # With workers, local uncompressed shards are written by a process
        # (started now too).
        process = (
            count > 0
            and config.compression == "none"
            and not fileio.is_remote(directory)
        )
        writer = ShardWriter(
            directory,
            num_shards,
            config.compression,
            engine.computer,
            blocks,
            process=process,
        )
        try:
            plan = engine.plan()
            if engine.pool is not None:
                engine.pool.wait_ready()
            counts = engine.materialize(plan, writer, blocks)
        finally:
            writer.close()
    dead_letters = [
        output.write_dead_letters(directory, reason, errors, files)
        for reason, errors in sorted(counts.errors.items())
    ]
    dropped, dropped_files = 0, []
    if config.static_shapes:
        planned = static_shapes.plan_batches(
            *engine.valid, plan.boundaries, plan.batch_size,
            drop_remainder=config.drop_remainder,
        )  # fmt: skip
        static_batches.check_written(planned, writer.totals)
        dropped = len(planned.dropped)
        dropped_files = static_shapes.write_dropped(
            directory,
            engine.valid[0][planned.dropped],
            engine.valid[1][planned.dropped],
            files,
        )
    md = metadata.assemble(
        info,
        boundaries=plan.boundaries,
        # On the lengths written (the lengths pass also counts records that
        # validation dead-letters).
        estimated_efficiency=bucket.estimated_padding_efficiency(
            counts.lengths, plan.boundaries
        ),
        records_per_file=dict(counts.records_per_file),
        dead_letters=dead_letters,
        totals=writer.totals,
        shards=writer.entries(),
        truncated_positions=sorted(counts.truncated),
        **static_shapes.metadata_args(
            config,
            shapes=dict(writer.shapes),
            dropped=dropped,
            dropped_files=dropped_files,
            depth=engine.computer.depth,
        ),
    )
    metadata.write_metadata(directory, md, writer.checksums())
    return md
