"""The single-machine engine (`--engine tfdata`): the same stages without Beam.

Place in the flow: read -> decode/validate -> bucket -> features -> write ->
metadata, like job.py, sharing its pure functions. The stages overlap in
threads: files are read by `read.read_file` (so damage becomes dead letters);
each chunk of records is decoded and validated in one vectorized call
(`validate.validate_decoded`, parsed once); the main thread drops duplicate
ids and gives each example its batch and rows in a block (`_OpenBatch`,
`_Blocks`: 256 KiB of rows, reused), with no data copied; a pool of two threads
computes each chunk's features in one layer call as flat rows [steps, D]
(`FeatureComputer.flat_rows`) and gathers them, sorted by bucket, into those
rows (`_fill`); a writer thread writes full batches in order, each record
from views of the blocks plus shared zeros for the padding
(`write.padded_blocks`, `write.RecordWriter`): a step is copied once between
the layer and the file.

Order: batches are written in the order of the example completing them, as if
examples joined their bucket's batch one by one; remainders are flushed at the
end, bucket by bucket (only a bucket's last batch is short). Batch k goes to
shard k % N. With `--bucket_boundaries auto` a first, light pass (one feature
list parsed) computes the length histogram. Files are read one after the
other, records in file order, so the first record of an example id met is the
one at the smallest position: later ones are `duplicate_id` dead letters, like
in the Beam job (the set of ids seen stays in memory). Progress lines go to
stderr (progress.py).
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import gc
import threading
from collections.abc import Mapping, Sequence
from queue import Empty, Full, Queue

import numpy as np
import tensorflow as tf

from pipeline import (
    bucket,
    decode,
    features,
    fileio,
    metadata,
    progress,
    read,
    validate,
    write,
)
from pipeline.validate import ErrorRecord, Reason

_CHUNK = 1024
_AHEAD = 4  # chunks a stage's thread runs ahead
_FEATURE_THREADS = 2  # chunks whose features are computed at once
_IN_FLIGHT = 8  # full batches waiting for the writer thread
_BLOCK_BYTES = 1 << 18  # the unit of memory for examples waiting for a batch


def _read_all(files: Sequence[str]):
    """Yields (chunk [(position, bytes)], read ErrorRecords, bytes read), files
    one after the other, records in file order (duplicate ids rely on it)."""
    for fi, path in enumerate(files):
        for records, errors in read.read_file(path, fi, chunk_size=_CHUNK):
            errors = [
                ErrorRecord(Reason(e.reason), e.detail, position, e.data)
                for position, e in errors
            ]
            nbytes = sum(len(d) + 16 for _, d in records)
            yield records, errors, nbytes + sum(len(e.data) for e in errors)


def _ahead(items, name: str):
    """Iterates `items` in a thread, `_AHEAD` items ahead of the consumer (the
    stages overlap: TF ops, numpy and file I/O release the GIL). An exception of
    the thread is raised here, at the item where it happened."""
    queue: Queue = Queue(maxsize=_AHEAD)
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
                items.close()  # stops an upstream `_ahead` thread too

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


def _ordered_map(fn, items, workers: int):
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


def _checked_chunks(files, decoder, spec, policy):
    """Yields (chunk, read errors, bytes read, (Checked, DecodedBatch, rows) or
    None): reading and validation each run in their own thread."""

    def check(chunks):
        for chunk, read_errors, nbytes in chunks:
            result = (
                validate.validate_decoded(decoder, spec, chunk, policy, files)
                if chunk
                else None
            )
            yield chunk, read_errors, nbytes, result

    return _ahead(check(_ahead(_read_all(files), "read")), "validate")


def _dedupe(spec, result, files, seen: dict):
    """Drops later duplicate ids (`seen`: id -> first position, updated).

    Returns `(valid, errors, truncated, decoded, rows)` of a validated chunk.
    """
    if result is None:
        return [], [], [], None, np.zeros(0, np.int64)
    checked, decoded, rows = result
    valid, errors = checked.valid, list(checked.errors)
    if spec.id_feature is not None:
        valid, keep = [], []
        for k, (member, ident) in enumerate(
            zip(checked.valid, checked.ids, strict=True)
        ):
            first = seen.setdefault(ident, member[0])
            if first == member[0]:
                valid.append(member)
                keep.append(k)
            else:
                errors.append(validate.duplicate_error(member, ident, first, files))
        rows = rows[np.asarray(keep, np.int64)]
    return valid, errors, checked.truncated, decoded, rows


def _take(values: np.ndarray, row_lengths: np.ndarray, rows: np.ndarray):
    """Rows `rows` of a ragged (values, row_lengths) pair, as the same pair."""
    starts = np.cumsum(row_lengths) - row_lengths
    index = features.ragged_index(starts, row_lengths, rows)
    return np.take(values, index, axis=0), row_lengths[rows]  # 10x `values[index]`


class _OpenBatch:
    """A bucket's batch being filled. Examples join it in reading order and get
    rows of blocks (`_Blocks`), one example after the other; a features thread
    then copies the chunk's steps there (`_fill`), the only copy of a step in
    this process. The record is written from views of those rows plus shared
    zeros for the padding (`write.padded_blocks`, `write.RecordWriter`)."""

    def __init__(self, size: int):
        self.size, self.n = size, 0
        self.parts: list[tuple[np.ndarray, int, np.ndarray]] = []  # block, row, lengths
        self._block: np.ndarray | None = None  # the block being filled
        self._used = 0  # its rows given out
        self._context: dict[str, list] = collections.defaultdict(list)
        self._ids: list = []

    def room(self) -> int:
        return self.size - self.n

    def add(self, lengths: np.ndarray, context: dict, ids, blocks: _Blocks) -> list:
        """Gives rows to examples with these lengths, context {name: (values,
        row_lengths)} and ids (or None), taking blocks as needed. Returns where
        their steps go, in order: [(block, first row, rows)]."""
        fills = []
        ends = np.cumsum(lengths)
        i = 0
        while i < len(lengths):
            done = int(ends[i - 1]) if i else 0
            room = 0 if self._block is None else len(self._block) - self._used
            j = int(np.searchsorted(ends, done + room, side="right"))
            if j == i:  # the next example needs a new block
                self._block, self._used = blocks.get(int(lengths[i])), 0
                continue
            rows = int(ends[j - 1]) - done
            self.parts.append((self._block, self._used, lengths[i:j]))
            fills.append((self._block, self._used, rows))
            self._used += rows
            i = j
        for name, values in context.items():
            self._context[name].append(values)
        if ids is not None:
            self._ids.append(ids)
        self.n += len(lengths)
        return fills

    def blocks(self) -> list[np.ndarray]:
        """The blocks holding the batch's steps (each once)."""
        return list({id(block): block for block, _, _ in self.parts}.values())

    def contents(self) -> tuple:
        """(runs [(rows, lengths)]: the examples' steps, one after the other,
        lengths [B], context {name: (values, row lengths)}, ids [B] or None),
        once every example is filled."""
        runs = [
            (block[first : first + int(lengths.sum())], lengths)
            for block, first, lengths in self.parts
        ]
        lengths = np.concatenate([lengths for _, _, lengths in self.parts])
        context = {
            name: tuple(np.concatenate(column) for column in zip(*parts, strict=True))
            for name, parts in self._context.items()
        }
        ids = np.concatenate(self._ids) if self._ids else None
        return runs, lengths, context, ids


class _Blocks:
    """Blocks of rows [R, D] (`_BLOCK_BYTES`) where batches being filled keep their
    examples' steps, reused once a batch is written: memory follows what
    waits (plus at most a block per batch), and steps are copied into pages
    already in memory (a fresh array faults in a zeroed page every 4 KiB,
    which costs more than the copy). An example longer than R rows gets a
    block of its own, not reused. Thread-safe (list append and pop)."""

    def __init__(self, depth: int):
        self.depth = depth
        self.rows = max(1, _BLOCK_BYTES // (4 * depth))
        self._free: list[np.ndarray] = []

    def get(self, rows: int) -> np.ndarray:
        if rows > self.rows:
            return np.empty((rows, self.depth), np.float32)
        try:
            return self._free.pop()
        except IndexError:
            return np.empty((self.rows, self.depth), np.float32)

    def put(self, block: np.ndarray) -> None:
        if len(block) == self.rows:
            self._free.append(block)


def _fill(rows: np.ndarray, lengths: np.ndarray, order: np.ndarray, fills: list):
    """Copies a chunk's flat rows (`rows`, example after example, `lengths`)
    to its batches' blocks: the examples in `order` (by bucket) are contiguous
    runs of rows, one per fill [(block, first row, rows)], in that order. One
    gather per fill, straight into the block (no array of the sorted rows)."""
    starts = np.cumsum(lengths) - lengths
    index = features.ragged_index(starts, lengths, order)
    at = 0
    for block, first, count in fills:
        # mode="clip": the indices are valid; "raise" would buffer `out`.
        np.take(
            rows, index[at : at + count], axis=0, out=block[first : first + count],
            mode="clip",
        )  # fmt: skip
        at += count


def _by_bucket(lengths: np.ndarray, boundaries):
    """(order, [(bucket, start, stop)]): `order` sorts the examples by bucket,
    reading order kept within one; bucket `bucket` holds order[start:stop]."""
    ids = bucket.assign_buckets(lengths, boundaries)
    order = np.argsort(ids, kind="stable")
    bids, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)
    spans = [
        (bid, start, start + count)
        for bid, start, count in zip(
            bids.tolist(), starts.tolist(), counts.tolist(), strict=True
        )
    ]
    return order, spans


def _histogram(files, spec, new_report, policy) -> dict[int, int]:
    """Length histogram for `--bucket_boundaries auto`, from a light parse.

    Only one feature list and the id are parsed (`decode.length_spec`): this
    pass costs a fraction of validation, which runs once, in the main pass.
    Counted: each record that parses, once per id (its first position), with
    the length policy applied (too long: clipped under truncate, left out
    under dead_letter; empty: left out). Records that validation later
    dead-letters for another reason (dtype, unequal lengths, NaN...) are
    counted too: they can only move the boundaries, an estimate by nature.

    Healthy local input is read and parsed by tf.data (C++ reader, parallel
    parse); damaged framing or a record the parse rejects makes the pass start
    over with the engine's own reader, which isolates them. Remote input
    (gs://, s3://) is read by the engine's reader through `fileio` (not
    TensorFlow's file systems), its chunks decoded by TensorFlow.
    """
    light = decode.length_spec(spec)
    if any(fileio.is_remote(f) for f in files):  # bytes through fileio, not TF
        return _count_lengths(_reader_lengths(files, light), policy, new_report())
    try:
        return _count_lengths(_tfdata_lengths(files, light), policy, new_report())
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
        return _count_lengths(_reader_lengths(files, light), policy, new_report())


def _count_lengths(chunks, policy, report) -> dict[int, int]:
    """Histogram of (lengths, ids or None, records, bytes) chunks (see above)."""
    hist: collections.Counter = collections.Counter()
    seen: set = set()
    for lengths, ids, records, nbytes in chunks:
        keep = lengths > 0
        if policy.max_length is not None:
            if policy.on_long == "truncate":
                lengths = np.minimum(lengths, policy.max_length)
            else:
                keep &= lengths <= policy.max_length
        if ids is not None:
            for row, ident in enumerate(ids.tolist()):
                if ident in seen:
                    keep[row] = False
                else:
                    seen.add(ident)
        hist.update(lengths[keep].tolist())
        if report:
            report.add(records, nbytes)
    if report:
        report.done()
    return dict(hist)


def _no_autotune() -> tf.data.Options:
    """tf.data options with the autotuner off (AUTOTUNE parallelism = cores).

    With the autotuner on, while another Python thread holds the GIL (here the
    tracer, 1-2 s), the pass's last `next()` waited ~1 s with no thread busy:
    200k records took 2.60 s beside a thread spinning for 0.8 s (3 of 3 runs),
    1.46-1.54 s with it off, 1.2-1.3 s with no other thread.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def _tfdata_lengths(files, light: decode.RecordSpec):
    """(lengths, ids, records, bytes) per _CHUNK records, files in order."""
    parse_batch = decode.Decoder(light).parse
    (key,) = light.sequence

    def parse(serialized):
        features, ids, _ = parse_batch(serialized)
        row_splits = features[key][2]
        records = tf.size(serialized, out_type=tf.int64)
        nbytes = tf.reduce_sum(tf.cast(tf.strings.length(serialized), tf.int64))
        return row_splits[1:] - row_splits[:-1], ids, records, nbytes + 16 * records

    dataset = (
        tf.data.TFRecordDataset(list(files), buffer_size=1 << 22)
        .batch(_CHUNK)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(2)
        .with_options(_no_autotune())
    )
    for lengths, ids, records, nbytes in dataset.as_numpy_iterator():
        yield lengths, ids if light.id_feature is not None else None, records, nbytes


def _reader_lengths(files, light: decode.RecordSpec):
    """The same chunks through `read.read_file` and `decode.Decoder`."""
    decoder = decode.Decoder(light)
    (key,) = light.sequence
    for chunk, read_errors, nbytes in _ahead(_read_all(files), "read"):
        records = len(chunk) + len(read_errors)
        if not chunk:
            yield np.zeros(0, np.int64), None, records, nbytes
            continue
        decoded = decoder.decode([data for _, data in chunk])
        yield np.diff(decoded.features[key][2]), decoded.ids, records, nbytes


def _trace(decoder: decode.Decoder, computer: features.FeatureComputer) -> None:
    """Traces the engine's tf.functions ahead of their first chunk (their input
    signatures are fixed: one trace each, the one they would take anyway)."""
    decoder.parse.get_concrete_function()
    computer.trace()


def _fewer_collections(run):
    """Runs `run` with the GC's young generation collected every 50,000
    allocations instead of 700: the engine allocates many short-lived
    containers (a tuple per record, lists per chunk) and each collection stops
    every thread; at 200k, 0.2 s of collections instead of 0.9 s (~450 of
    them). Containers that die young are freed by reference counting anyway."""

    @functools.wraps(run)
    def wrapped(**kwargs):
        old = gc.get_threshold()
        gc.set_threshold(50_000, *old[1:])
        try:
            return run(**kwargs)
        finally:
            gc.set_threshold(*old)

    return wrapped


@_fewer_collections
def run_engine(
    *,
    config,
    spec,
    files: Sequence[str],
    directory: str,
    num_shards: int,
    embedding_weights: Mapping,
    info,
) -> dict:
    """Runs the whole job in this process, writing into `directory` (staging).

    Returns:
      The metadata dict (also written to directory/metadata.json).
    """
    record_spec = decode.record_spec(spec.columns, spec.context, config.id_feature)
    decoder = decode.Decoder(record_spec, strings_as_tensors=True)
    policy = validate.Policy(
        config.max_sequence_length, config.on_long, config.on_invalid
    )
    computer = features.FeatureComputer(
        spec.columns, spec.context, embedding_weights, config.id_feature
    )
    total_bytes = sum(read.file_size(f) for f in files)

    def reporter(label):
        return (
            progress.Progress(label, total_bytes=total_bytes)
            if config.progress
            else None
        )

    # Tracing the parser and the layer (~1 s of Python, no data needed) runs
    # while the lengths pass keeps TF's threads busy.
    with concurrent.futures.ThreadPoolExecutor(1) as tracer:
        traced = tracer.submit(_trace, decoder, computer)
        histogram = {}
        if config.bucket_boundaries == "auto":
            histogram = _histogram(
                files, record_spec, lambda: reporter("lengths pass"), policy
            )
        traced.result()
    plan = bucket.make_plan(histogram, config.bucket_boundaries, config.batch_size)
    report = reporter("materialize")

    writers = [
        write.RecordWriter(
            f"{directory}/{write.SHARDS_DIR}/{write.shard_name(i, num_shards)}",
            config.compression,
        )
        for i in range(num_shards)
    ]
    shard_batches = [0] * num_shards
    shard_examples = [0] * num_shards
    totals = {"batches": 0, "examples": 0, "real": 0, "padded": 0}
    seen_hist: collections.Counter = collections.Counter()

    def write_batch(batch: _OpenBatch) -> None:  # on the writer thread, in order
        pieces, stats = computer.record_pieces(*batch.contents())
        k = totals["batches"] % num_shards
        writers[k].write(pieces)
        for block in batch.blocks():
            blocks.put(block)
        shard_batches[k] += 1
        shard_examples[k] += stats.examples
        totals["batches"] += 1
        totals["examples"] += stats.examples
        totals["real"] += stats.real_steps
        totals["padded"] += stats.padded_steps

    # One writer thread: batches are written in the order they are handed
    # over (file writes and CRCs release the GIL).
    writer = concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="seqshards-write"
    )
    in_flight: collections.deque = collections.deque()

    def hand_over(batch: _OpenBatch | None, limit: int = _IN_FLIGHT) -> None:
        """Queues `batch` for writing; raises a failed write's error; waits
        while more than `limit` batches are queued (their memory)."""
        if batch is not None:
            in_flight.append(writer.submit(write_batch, batch))
        while in_flight and (in_flight[0].done() or len(in_flight) > limit):
            in_flight.popleft().result()

    open_batches: dict[int, _OpenBatch] = {}  # bucket -> its batch being filled
    blocks = _Blocks(computer.depth)
    errors: dict[str, list] = collections.defaultdict(list)
    records_per_file: collections.Counter = collections.Counter()
    truncated: list = []
    seen_ids: dict = {}
    boundaries = plan.boundaries

    def assign(lengths, decoded, rows) -> tuple[np.ndarray, list, list]:
        """Gives a chunk's examples (`rows` of `decoded`, their `lengths`) their
        batch and rows in its blocks, in reading order (the main thread's only
        per-chunk work with the data).

        Returns `(order, fills, full)`: the examples by bucket, fills
        [(block, first row, rows)] for `_fill`, and the batches the chunk
        completes, in the order of the example completing them (as if examples
        joined one by one).
        """
        order, spans = _by_bucket(lengths, boundaries)
        lengths = lengths[order]
        taken = rows[order]
        context = {n: _take(v, rl, taken) for n, (v, rl) in decoded.context.items()}
        # Example i's context values: v[at[n][i] : at[n][i + 1]].
        at = {n: np.concatenate([[0], np.cumsum(rl)]) for n, (_, rl) in context.items()}
        ids = None if decoded.ids is None else decoded.ids[taken]
        fills, full = [], []
        for bid, start, stop in spans:
            while start < stop:
                batch = open_batches.get(bid)
                if batch is None:
                    batch = open_batches[bid] = _OpenBatch(config.batch_size)
                end = min(stop, start + batch.room())
                fills += batch.add(
                    lengths[start:end],
                    {
                        n: (v[at[n][start] : at[n][end]], rl[start:end])
                        for n, (v, rl) in context.items()
                    },
                    None if ids is None else ids[start:end],
                    blocks,
                )
                if not batch.room():
                    full.append((end - 1, batch))
                    del open_batches[bid]
                start = end
        full.sort(key=lambda f: order[f[0]])
        return order, fills, [batch for _, batch in full]

    def assigned():  # main thread, in order: the first position of an id wins
        for chunk, read_errors, nbytes, result in _checked_chunks(
            files, decoder, record_spec, policy
        ):
            checked = _dedupe(record_spec, result, files, seen_ids)
            valid, _, _, decoded, rows = checked
            work, full = None, []
            if valid:
                lengths = np.asarray([v[1] for v in valid], np.int64)
                order, fills, full = assign(lengths, decoded, rows)
                work = (decoded, rows, lengths, order, fills)
            yield chunk, read_errors, nbytes, checked, full, work

    def features_of(item):  # one layer call per chunk (thread pool)
        if item[5] is not None:
            decoded, rows, lengths, order, fills = item[5]
            _fill(computer.flat_rows(decoded, rows, lengths), lengths, order, fills)
        return item

    try:
        # A batch completed by chunk k's examples holds examples of chunks
        # <= k only: all filled once chunk k's features are (results in order).
        for chunk, read_errors, nbytes, checked, full, work in _ordered_map(
            features_of, assigned(), _FEATURE_THREADS
        ):
            for e in read_errors:
                errors[e.reason.value].append(e)
                records_per_file[e.position[0]] += 1
            _, bad, cut, _, _ = checked
            truncated.extend(cut)
            for e in bad:
                errors[e.reason.value].append(e)
            for position, _ in chunk:
                records_per_file[position[0]] += 1
            if work is not None:
                seen_hist.update(work[2].tolist())
            for batch in full:
                hand_over(batch)
            if report:
                report.add(len(chunk) + len(read_errors), nbytes)
        for bid in sorted(open_batches):  # each bucket's short last batch
            hand_over(open_batches[bid])
        hand_over(None, 0)
        if report:
            report.done()
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        for w in writers:
            w.close()

    error_files, error_positions, error_counts = [], {}, {}
    for reason, items in sorted(errors.items()):
        items.sort(key=lambda e: e.position)
        rel = f"{write.ERRORS_DIR}/{reason}.jsonl"
        write.write_errors(f"{directory}/{rel}", items, files)
        error_files.append(rel)
        error_counts[reason] = len(items)
        error_positions[reason] = [list(e.position) for e in items[:10]]
    # On the lengths written (the lengths pass also counts records that
    # validation dead-letters).
    estimated = bucket.estimated_padding_efficiency(seen_hist, plan.boundaries)
    md = metadata.build_metadata(
        **info.metadata_args(),
        boundaries=plan.boundaries,
        estimated_efficiency=estimated,
        records_per_file=dict(records_per_file),
        errors=error_counts,
        error_positions=error_positions,
        examples_written=totals["examples"],
        batches=totals["batches"],
        real_steps=totals["real"],
        padded_steps=totals["padded"],
        shards=[
            {
                "file": f"{write.SHARDS_DIR}/{write.shard_name(i, num_shards)}",
                "batches": shard_batches[i],
                "examples": shard_examples[i],
            }
            for i in range(num_shards)
        ],
        errors_files=error_files,
        truncated_positions=sorted(truncated),
    )
    metadata.write_metadata(directory, md)
    return md
