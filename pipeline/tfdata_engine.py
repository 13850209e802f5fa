"""The single-machine engine (`--engine tfdata`): the same stages without Beam.

Place in the flow: read -> decode/validate -> bucket -> features -> write ->
metadata, like job.py, sharing its pure functions. Three stages overlap, each in
its own thread: files are read by `read.read_file` (so damage becomes dead
letters), each chunk of records is decoded and validated in one vectorized call
(`validate.validate_decoded`, parsed once), and the main thread drops duplicate
ids, computes the chunk's features in one layer call as flat rows [steps, D]
(`FeatureComputer.flat_rows`), splits them by bucket with numpy, and cuts each
bucket's rows into batches of B (`rows_record`: padded [B,T,D] assembled by
index arithmetic, then written). Batches are emitted in the order of the
example completing them, as when examples joined per-bucket buffers one by
one; remainders are flushed at the end, bucket by bucket (only a bucket's last
batch is short). Batch k goes to shard k % N. With `--bucket_boundaries auto`
a first, light pass (one feature list parsed) computes the length
histogram. Files are read one after the other, records in file order, so the
first record of an example id met is the one at the smallest position: later ones are `duplicate_id` dead letters, like
in the Beam job (the set of ids seen stays in memory). Progress lines go to
stderr (progress.py).
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Mapping, Sequence
from queue import Empty, Full, Queue

import numpy as np
import tensorflow as tf

from pipeline import bucket, decode, features, metadata, progress, read, validate, write
from pipeline.validate import ErrorRecord, Reason

_CHUNK = 1024
_AHEAD = 4  # chunks a stage's thread runs ahead
_FEATURE_THREADS = 2  # chunks whose features are computed at once
_SHARED_CHUNKS = 8  # chunks whose leftover rows a bucket may share (memory bound)


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


def _ragged_index(starts: np.ndarray, lengths: np.ndarray, rows: np.ndarray):
    """Indices of the values of rows `rows` of a ragged array whose rows start
    at `starts` and hold `lengths` values."""
    taken = lengths[rows]
    first = np.cumsum(taken) - taken
    return np.repeat(starts[rows] - first, taken) + np.arange(
        int(taken.sum()), dtype=np.int64
    )


def _take(values: np.ndarray, row_lengths: np.ndarray, rows: np.ndarray):
    """Rows `rows` of a ragged (values, row_lengths) pair, as the same pair."""
    starts = np.cumsum(row_lengths) - row_lengths
    return values[_ragged_index(starts, row_lengths, rows)], row_lengths[rows]


class _Segment:
    """Examples with their features: flat rows [S, D] (example after example),
    lengths [n], context {name: (values, row_lengths)}, ids [n] or None."""

    def __init__(self, x, lengths, context, ids):
        self.x, self.lengths, self.context, self.ids = x, lengths, context, ids
        self._starts: dict = {}  # None (the rows) or a context name -> row starts
        self.shared = -1  # chunk whose leftovers (of several buckets) it holds

    def shared_from(self, chunk: int) -> _Segment:
        """Marks it as holding chunk `chunk`'s leftovers (-1: one bucket's)."""
        self.shared = chunk
        return self

    def __len__(self):
        return len(self.lengths)

    def _index(self, name, row_lengths, rows):
        if name not in self._starts:  # once per segment, not per bucket
            self._starts[name] = np.cumsum(row_lengths) - row_lengths
        return _ragged_index(self._starts[name], row_lengths, rows)

    def take(self, rows: np.ndarray) -> _Segment:
        """Examples `rows`, copied out (the whole segment itself if `rows` is
        all of it, in order)."""
        if len(rows) == len(self) and (np.diff(rows) == 1).all():
            return self
        x = self.x[self._index(None, self.lengths, rows)]
        context = {
            n: (v[self._index(n, rl, rows)], rl[rows])
            for n, (v, rl) in self.context.items()
        }
        ids = None if self.ids is None else self.ids[rows]
        return _Segment(x, self.lengths[rows], context, ids)

    @staticmethod
    def gather(pieces: list) -> _Segment:
        """One segment of the examples of `pieces` [(segment, rows)], in order."""
        parts = [segment.take(rows) for segment, rows in pieces]
        if len(parts) == 1:
            return parts[0]
        context = {
            n: tuple(np.concatenate([p.context[n][i] for p in parts]) for i in (0, 1))
            for n in parts[0].context
        }
        ids = None if parts[0].ids is None else np.concatenate([p.ids for p in parts])
        return _Segment(
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.lengths for p in parts]),
            context,
            ids,
        )


def _by_bucket(lengths: np.ndarray, boundaries):
    """Yields (bucket, rows of its examples in reading order), buckets ascending."""
    ids = bucket.assign_buckets(lengths, boundaries)
    order = np.argsort(ids, kind="stable")
    bids, starts, counts = np.unique(ids[order], return_index=True, return_counts=True)
    for bid, start, count in zip(
        bids.tolist(), starts.tolist(), counts.tolist(), strict=True
    ):
        yield bid, order[start : start + count]


def _cut(pieces: list, size: int) -> tuple[list, list]:
    """Splits pieces [(segment, rows)] into batches of `size` examples (each a
    list of pieces) and the rest (fewer than `size`), order kept."""
    batches, current, held = [], [], 0
    for segment, rows in pieces:
        start = 0
        while start < len(rows):
            n = min(size - held, len(rows) - start)
            current.append((segment, rows[start : start + n]))
            held, start = held + n, start + n
            if held == size:
                batches.append(current)
                current, held = [], 0
    return batches, current


def _histogram(files, spec, report, policy) -> dict[int, int]:
    """Length histogram for `--bucket_boundaries auto`, from a light parse.

    Only one feature list and the id are parsed (`decode.length_spec`): this
    pass costs a fraction of validation, which runs once, in the main pass.
    Counted: each record that parses, once per id (its first position), with
    the length policy applied (too long: clipped under truncate, left out
    under dead_letter; empty: left out). Records that validation later
    dead-letters for another reason (dtype, unequal lengths, NaN...) are
    counted too: they can only move the boundaries, an estimate by nature.
    """
    light = decode.length_spec(spec)
    decoder = decode.Decoder(light)
    (key,) = light.sequence
    hist: collections.Counter = collections.Counter()
    seen: set = set()
    for chunk, read_errors, nbytes in _ahead(_read_all(files), "read"):
        if chunk:
            decoded = decoder.decode([data for _, data in chunk])
            lengths = np.diff(decoded.features[key][2])
            keep = lengths > 0
            if policy.max_length is not None:
                if policy.on_long == "truncate":
                    lengths = np.minimum(lengths, policy.max_length)
                else:
                    keep &= lengths <= policy.max_length
            if decoded.ids is not None:
                for row, ident in enumerate(decoded.ids.tolist()):
                    if ident in seen:
                        keep[row] = False
                    else:
                        seen.add(ident)
            hist.update(lengths[keep].tolist())
        if report:
            report.add(len(chunk) + len(read_errors), nbytes)
    if report:
        report.done()
    return dict(hist)


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
    decoder = decode.Decoder(record_spec)
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

    histogram = {}
    if config.bucket_boundaries == "auto":
        histogram = _histogram(files, record_spec, reporter("lengths pass"), policy)
    plan = bucket.make_plan(histogram, config.bucket_boundaries, config.batch_size)
    report = reporter("materialize")

    writers = [
        tf.io.TFRecordWriter(
            f"{directory}/{write.SHARDS_DIR}/{write.shard_name(i, num_shards)}",
            write.record_options(config.compression),
        )
        for i in range(num_shards)
    ]
    shard_batches = [0] * num_shards
    shard_examples = [0] * num_shards
    totals = {"batches": 0, "examples": 0, "real": 0, "padded": 0}
    seen_hist: collections.Counter = collections.Counter()

    def emit(segment):
        record, stats = computer.rows_record(
            segment.x, segment.lengths, segment.context, segment.ids
        )
        k = totals["batches"] % num_shards
        writers[k].write(record)
        shard_batches[k] += 1
        shard_examples[k] += stats.examples
        totals["batches"] += 1
        totals["examples"] += stats.examples
        totals["real"] += stats.real_steps
        totals["padded"] += stats.padded_steps

    # bucket -> examples waiting for a full batch: [(segment, rows)]
    buffers: dict[int, list] = collections.defaultdict(list)
    chunks_done = 0
    errors: dict[str, list] = collections.defaultdict(list)
    records_per_file: collections.Counter = collections.Counter()
    truncated: list = []
    seen_ids: dict = {}
    b = config.batch_size

    def deduped():  # in order: the first position of an id wins
        for chunk, read_errors, nbytes, result in _checked_chunks(
            files, decoder, record_spec, policy
        ):
            yield (
                chunk,
                read_errors,
                nbytes,
                _dedupe(record_spec, result, files, seen_ids),
            )

    def with_features(item):  # one layer call per chunk (thread pool)
        valid, _, _, decoded, rows = item[3]
        if not valid:
            return item, None
        lengths = np.asarray([v[1] for v in valid], np.int64)
        return item, _Segment(
            computer.flat_rows(decoded, rows, lengths),
            lengths,
            {n: _take(v, rl, rows) for n, (v, rl) in decoded.context.items()},
            None if decoded.ids is None else decoded.ids[rows],
        )

    try:
        for (chunk, read_errors, nbytes, checked), chunk_rows in _ordered_map(
            with_features, deduped(), _FEATURE_THREADS
        ):
            for e in read_errors:
                errors[e.reason.value].append(e)
                records_per_file[e.position[0]] += 1
            valid, bad, cut, _, _ = checked
            truncated.extend(cut)
            for e in bad:
                errors[e.reason.value].append(e)
            for position, _ in chunk:
                records_per_file[position[0]] += 1
            if chunk_rows is not None:
                lengths = chunk_rows.lengths
                seen_hist.update(lengths.tolist())
                # Batches cut bucket by bucket from what waits and the chunk;
                # what is left waits, copied out of the chunk (a view would
                # keep all of the chunk's rows alive).
                ready, waiting = [], []
                for bid, rows in _by_bucket(lengths, plan.boundaries):
                    batches, rest = _cut([*buffers[bid], (chunk_rows, rows)], b)
                    ready.extend((int(batch[-1][1][-1]), batch) for batch in batches)
                    buffers[bid] = [(s, r) for s, r in rest if s is not chunk_rows]
                    waiting += [(bid, r) for s, r in rest if s is chunk_rows]
                for _, batch in sorted(ready, key=lambda item: item[0]):
                    emit(_Segment.gather(batch))
                if waiting:  # one copy for every bucket's newcomers
                    kept = chunk_rows.take(np.concatenate([r for _, r in waiting]))
                    kept = kept.shared_from(chunks_done)
                    start = 0
                    for bid, r in waiting:
                        rows = np.arange(start, start + len(r), dtype=np.int64)
                        buffers[bid].append((kept, rows))
                        start += len(r)
                # A bucket still waiting on rows shared with other buckets
                # after _SHARED_CHUNKS chunks gets its own copy, so that at
                # most that many chunks' leftovers stay in memory.
                oldest = chunks_done - _SHARED_CHUNKS
                for bid, pieces in buffers.items():
                    if any(-1 < s.shared <= oldest for s, _ in pieces):
                        own = _Segment.gather(pieces).shared_from(-1)
                        buffers[bid] = [(own, np.arange(len(own), dtype=np.int64))]
                chunks_done += 1
            if report:
                report.add(len(chunk) + len(read_errors), nbytes)
        for bid in sorted(buffers):
            if buffers[bid]:
                emit(_Segment.gather(buffers[bid]))
        if report:
            report.done()
    finally:
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
        engine="tfdata",
        layout=info.layout,
        columns_file=info.columns_file,
        context=info.context,
        id_feature=info.id_feature,
        batch_size=config.batch_size,
        boundaries=plan.boundaries,
        estimated_efficiency=estimated,
        input_pattern=config.input_pattern,
        files=files,
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
        embeddings=info.embeddings,
        compression=info.compression,
        truncated_positions=sorted(truncated),
    )
    metadata.write_metadata(directory, md)
    return md
