"""The single-machine engine (`--engine tfdata`): the same stages without Beam.

Place in the flow: read -> decode/validate -> bucket -> features -> write ->
metadata, like job.py, sharing its pure functions. Files are read by
`read.read_file` (so damage becomes dead letters) inside a tf.data pipeline
(parallel, deterministic interleave over files, prefetch); each chunk is decoded
and validated in one vectorized call; valid records go to per-bucket buffers and
every full buffer becomes a batch (one `FeatureComputer` tf.function call);
remainders are flushed at the end, bucket by bucket (only a bucket's last batch
is short). Batch k goes to shard k % N. With `--bucket_boundaries auto` a first
pass computes the length histogram. Files are read one after the other, records
in file order, so the first record of an example id met is the one at the
smallest position: later ones are `duplicate_id` dead letters, like in the Beam
job (the set of ids seen stays in memory). Progress lines go to stderr (progress.py).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from pipeline import bucket, decode, features, metadata, progress, read, validate, write
from pipeline.validate import ErrorRecord, Reason

_CHUNK = 1024


def _objects(items) -> np.ndarray:
    # An object array keeps bytes intact ('S' arrays would strip trailing NULs).
    out = np.empty(len(items), object)
    out[:] = items
    return out


def _source(files: Sequence[str]) -> tf.data.Dataset:
    """Chunks (file_index, record_index[n], data[n], err_index[m], err_reason[m],
    err_detail[m], err_data[m]), in position order (duplicate ids rely on it)."""

    def gen(file_index):
        file_index = int(file_index)
        for records, errors in read.read_file(
            files[file_index], file_index, chunk_size=_CHUNK
        ):
            yield (
                np.int64(file_index),
                np.asarray([p[1] for p, _ in records], np.int64),
                _objects([d for _, d in records]),
                np.asarray([p[1] for p, _ in errors], np.int64),
                _objects([e.reason.encode() for _, e in errors]),
                _objects([e.detail.encode() for _, e in errors]),
                _objects([e.data for _, e in errors]),
            )

    string = tf.TensorSpec([None], tf.string)
    index = tf.TensorSpec([None], tf.int64)
    signature = (
        tf.TensorSpec([], tf.int64),
        index,
        string,
        index,
        string,
        string,
        string,
    )
    return (
        tf.data.Dataset.range(len(files))
        .interleave(
            lambda i: tf.data.Dataset.from_generator(
                gen, args=(i,), output_signature=signature
            ),
            cycle_length=1,
        )
        .prefetch(4)
    )


def _chunks(files: Sequence[str]):
    """Yields (chunk [(position, bytes)], read ErrorRecords, bytes read)."""
    for fi, idx, data, e_idx, e_reason, e_detail, e_data in _source(
        files
    ).as_numpy_iterator():
        fi = int(fi)
        chunk = [
            ((fi, int(i)), bytes(d))
            for i, d in zip(idx.tolist(), data.tolist(), strict=True)
        ]
        errors = [
            ErrorRecord(Reason(r.decode()), det.decode(), (fi, int(i)), bytes(d))
            for i, r, det, d in zip(
                e_idx.tolist(),
                e_reason.tolist(),
                e_detail.tolist(),
                e_data.tolist(),
                strict=True,
            )
        ]
        nbytes = sum(len(d) + 16 for _, d in chunk) + sum(len(e.data) for e in errors)
        yield chunk, errors, nbytes


def _check(decoder, spec, chunk, policy, files, seen: dict):
    """validate_chunk + duplicate ids (`seen`: id -> first position, updated)."""
    if not chunk:
        return [], [], []
    checked = validate.validate_chunk(decoder, spec, chunk, policy, files)
    if spec.id_feature is None:
        return checked.valid, checked.errors, checked.truncated
    valid, errors = [], list(checked.errors)
    for member, ident in zip(checked.valid, checked.ids, strict=True):
        first = seen.setdefault(ident, member[0])
        if first == member[0]:
            valid.append(member)
        else:
            errors.append(validate.duplicate_error(member, ident, first, files))
    return valid, errors, checked.truncated


def _histogram(files, decoder, spec, report, policy) -> dict[int, int]:
    hist: collections.Counter = collections.Counter()
    seen: dict = {}
    for chunk, read_errors, nbytes in _chunks(files):
        valid, _, _ = _check(decoder, spec, chunk, policy, files, seen)
        hist.update(length for _, length, _ in valid)
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
        histogram = _histogram(
            files, decoder, record_spec, reporter("lengths pass"), policy
        )
    plan = bucket.make_plan(histogram, config.bucket_boundaries, config.batch_size)
    report = reporter("materialize")

    writers = [
        tf.io.TFRecordWriter(
            f"{directory}/{write.SHARDS_DIR}/{write.shard_name(i, num_shards)}"
        )
        for i in range(num_shards)
    ]
    shard_batches = [0] * num_shards
    shard_examples = [0] * num_shards
    totals = {"batches": 0, "examples": 0, "real": 0, "padded": 0}
    seen_hist: collections.Counter = collections.Counter()

    def emit(members):
        record, stats = computer.batch_record(members)
        k = totals["batches"] % num_shards
        writers[k].write(record)
        shard_batches[k] += 1
        shard_examples[k] += stats.examples
        totals["batches"] += 1
        totals["examples"] += stats.examples
        totals["real"] += stats.real_steps
        totals["padded"] += stats.padded_steps

    buffers: dict[int, list] = collections.defaultdict(list)
    errors: dict[str, list] = collections.defaultdict(list)
    records_per_file: collections.Counter = collections.Counter()
    truncated: list = []
    seen_ids: dict = {}
    b = config.batch_size
    try:
        for chunk, read_errors, nbytes in _chunks(files):
            for e in read_errors:
                errors[e.reason.value].append(e)
                records_per_file[e.position[0]] += 1
            valid, bad, cut = _check(
                decoder, record_spec, chunk, policy, files, seen_ids
            )
            truncated.extend(cut)
            for e in bad:
                errors[e.reason.value].append(e)
            for position, _ in chunk:
                records_per_file[position[0]] += 1
            if valid:
                lengths = np.asarray([v[1] for v in valid], np.int64)
                seen_hist.update(lengths.tolist())
                ids = bucket.assign_buckets(lengths, plan.boundaries)
                for member, bid in zip(valid, ids.tolist(), strict=True):
                    buf = buffers[bid]
                    buf.append(member)
                    if len(buf) == b:
                        emit(buf)
                        buffers[bid] = []
            if report:
                report.add(len(chunk) + len(read_errors), nbytes)
        for bid in sorted(buffers):
            if buffers[bid]:
                emit(buffers[bid])
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
    estimated = (
        plan.estimated_efficiency
        if histogram
        else bucket.estimated_padding_efficiency(seen_hist, plan.boundaries)
    )
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
        truncated_positions=sorted(truncated),
    )
    metadata.write_metadata(directory, md)
    return md
