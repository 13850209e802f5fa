"""The single-machine engine (`--engine tfdata`): the same stages without Beam.

Place in the flow: read -> decode/validate -> bucket -> features -> write ->
metadata, like job.py, sharing its pure functions. The stages overlap in
threads: files are read by `read.read_file` (so damage becomes dead letters);
each chunk of records is decoded and validated in one vectorized call
(`validate.validate_decoded`, parsed once); a pool of two threads computes each
chunk's features in one layer call as flat rows [steps, D]
(`FeatureComputer.flat_rows`); the main thread drops duplicate ids, sorts the
chunk's examples by bucket, appends them to their bucket's waiting examples
(`_Waiting`: growable arrays, slice copies) and hands every full batch, as
views, to a record thread (`rows_record`: the padded [B,T,D] written in place
into the record); it writes the records in order.

Order: batches are written in the order of the example completing them, as if
examples joined per-bucket buffers one by one; remainders are flushed at the
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
_RECORD_THREADS = 1  # batch records built at once
_IN_FLIGHT = 16  # batch records being built (~1 MB each at B=128)


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

    def __len__(self):
        return len(self.lengths)

    def take(self, rows: np.ndarray) -> _Segment:
        """Examples `rows`, copied out."""
        x, _ = _take(self.x, self.lengths, rows)
        context = {n: _take(v, rl, rows) for n, (v, rl) in self.context.items()}
        ids = None if self.ids is None else self.ids[rows]
        return _Segment(x, self.lengths[rows], context, ids)

    def offsets(self) -> dict:
        """Where each example starts: None -> in the rows, name -> in the
        context values (one more entry than examples)."""
        out = {None: np.concatenate([[0], np.cumsum(self.lengths)])}
        for n, (_, rl) in self.context.items():
            out[n] = np.concatenate([[0], np.cumsum(rl)])
        return out

    def range(self, a: int, b: int, offsets: dict) -> _Segment:
        """Examples [a, b) as views."""
        context = {
            n: (v[offsets[n][a] : offsets[n][b]], rl[a:b])
            for n, (v, rl) in self.context.items()
        }
        ids = None if self.ids is None else self.ids[a:b]
        x = self.x[offsets[None][a] : offsets[None][b]]
        return _Segment(x, self.lengths[a:b], context, ids)


class _Waiting:
    """The examples of one bucket waiting for a full batch, in reading order,
    in growable arrays: a chunk's examples join with a few slice copies and a
    batch is a view of the front, whatever the number of buckets and chunks
    (no per-example or per-chunk pieces to gather)."""

    def __init__(self, like: _Segment):
        self._x = np.empty((0,) + like.x.shape[1:], like.x.dtype)
        self._lengths = np.empty(0, np.int64)
        self._context = {
            n: [np.empty(0, v.dtype), np.empty(0, np.int64)]
            for n, (v, _) in like.context.items()
        }
        self._ids = None if like.ids is None else np.empty(0, like.ids.dtype)
        self._used = {"rows": 0, "examples": 0, **{n: 0 for n in like.context}}

    def __len__(self):
        return self._used["examples"]

    def add(self, part: _Segment) -> None:
        """Appends the examples of `part` (copied)."""
        used = self._used
        self._x = _put(self._x, used["rows"], part.x)
        used["rows"] += len(part.x)
        n = used["examples"]
        self._lengths = _put(self._lengths, n, part.lengths)
        if self._ids is not None:
            self._ids = _put(self._ids, n, part.ids)
        for name, (values, row_lengths) in part.context.items():
            held = self._context[name]
            held[0] = _put(held[0], used[name], values)
            held[1] = _put(held[1], n, row_lengths)
            used[name] += len(values)
        used["examples"] = n + len(part)

    def view(self) -> _Segment:
        """Every waiting example, as views. They stay valid: `add` only writes
        past them (or into a grown copy) and `drop` moves what is left to new
        arrays, so the record thread can build a batch from views while later
        examples join and leave."""
        used = self._used
        n = used["examples"]
        return _Segment(
            self._x[: used["rows"]],
            self._lengths[:n],
            {c: (v[: used[c]], rl[:n]) for c, (v, rl) in self._context.items()},
            None if self._ids is None else self._ids[:n],
        )

    def drop(self, count: int, offsets: dict) -> None:
        """Forgets the first `count` examples (`offsets`: of `view()`). What
        is left moves to right-sized arrays (never shifted in place: views
        taken before stay as they were), so memory follows what waits."""
        used = self._used
        n = used["examples"]
        rows = offsets[None][count]
        self._x = self._x[rows : used["rows"]].copy()
        used["rows"] -= rows
        self._lengths = self._lengths[count:n].copy()
        if self._ids is not None:
            self._ids = self._ids[count:n].copy()
        for name, held in self._context.items():
            first = offsets[name][count]
            held[0] = held[0][first : used[name]].copy()
            held[1] = held[1][count:n].copy()
            used[name] -= first
        used["examples"] = n - count


def _put(array: np.ndarray, at: int, values: np.ndarray) -> np.ndarray:
    """Writes `values` at `array[at:]`, growing `array` if needed (by a quarter
    at least: slack in every bucket's buffers costs memory)."""
    end = at + len(values)
    if end > len(array):
        size = max(end, len(array) + len(array) // 4)
        grown = np.empty((size,) + array.shape[1:], array.dtype)
        grown[:at] = array[:at]
        array = grown
    array[at:end] = values
    return array


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

    Healthy input is read and parsed by tf.data (C++ reader, parallel parse);
    damaged framing or a record the parse rejects makes the pass start over
    with the engine's own reader, which isolates them.
    """
    light = decode.length_spec(spec)
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

    histogram = {}
    if config.bucket_boundaries == "auto":
        histogram = _histogram(
            files, record_spec, lambda: reporter("lengths pass"), policy
        )
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

    def encode(segment):
        return computer.rows_record(
            segment.x, segment.lengths, segment.context, segment.ids
        )

    def emit(record, stats):
        k = totals["batches"] % num_shards
        writers[k].write(record)
        shard_batches[k] += 1
        shard_examples[k] += stats.examples
        totals["batches"] += 1
        totals["examples"] += stats.examples
        totals["real"] += stats.real_steps
        totals["padded"] += stats.padded_steps

    # Records are built on threads (numpy copies release the GIL) and written
    # here, in order.
    encoders = concurrent.futures.ThreadPoolExecutor(
        _RECORD_THREADS, thread_name_prefix="seqshards-records"
    )
    encoded: collections.deque = collections.deque()

    def write_encoded(limit: int) -> None:
        """Writes built records in order; waits while more than `limit` are
        being built."""
        while encoded and (encoded[0].done() or len(encoded) > limit):
            emit(*encoded.popleft().result())

    waiting: dict[int, _Waiting] = {}  # bucket -> examples short of a batch
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
                # The chunk's examples join their bucket's waiting ones (one
                # sort of the chunk by bucket, then slice copies); every full
                # batch is encoded, then written in the order of the example
                # completing it.
                order, spans = _by_bucket(lengths, plan.boundaries)
                chunk_rows = chunk_rows.take(order)
                offsets = chunk_rows.offsets()
                ready = []
                for bid, start, stop in spans:
                    if bid not in waiting:
                        waiting[bid] = _Waiting(chunk_rows)
                    pending = waiting[bid]
                    held = len(pending)
                    pending.add(chunk_rows.range(start, stop, offsets))
                    full = len(pending) // b
                    if not full:
                        continue
                    view = pending.view()
                    view_offsets = view.offsets()
                    for i in range(full):
                        last = start + (i + 1) * b - 1 - held  # in the chunk's order
                        batch = view.range(i * b, (i + 1) * b, view_offsets)
                        ready.append((int(order[last]), batch))
                    pending.drop(full * b, view_offsets)  # the views stay valid
                for _, batch in sorted(ready, key=lambda item: item[0]):
                    encoded.append(encoders.submit(encode, batch))
                write_encoded(_IN_FLIGHT)
            if report:
                report.add(len(chunk) + len(read_errors), nbytes)
        for bid in sorted(waiting):
            if len(waiting[bid]):
                encoded.append(encoders.submit(encode, waiting[bid].view()))
        write_encoded(0)
        if report:
            report.done()
    finally:
        encoders.shutdown(wait=True, cancel_futures=True)
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
