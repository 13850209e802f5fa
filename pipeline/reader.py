"""Reading materialized shards back: `load_metadata`, `load_dataset`.

Place in the flow: the consumer side of DIR (training). Imports TensorFlow only
(no Beam). See `stages.batch_format` for the batch record format. DIR may be
local, gs:// or s3:// (`stages.fileio`); remote shards are read through
`fileio` and fed to tf.data by a generator (TensorFlow's own GCS client cannot
be pointed at an emulator and TensorFlow 2.21 has no s3://). DIR is read only
once it checks out against its metadata.json (`stages.publish.verify`).
"""

from __future__ import annotations

import gzip

import tensorflow as tf

from pipeline.stages import fileio, publish, tfrecord
from pipeline.stages.metadata import load_metadata

__all__ = ["load_dataset", "load_metadata"]


def iter_shard_records(path: str, compression: str = "none"):
    """Yields the records of one shard file read through `fileio`.

    Raises:
      publish.IncompleteOutputError: the file's framing or a CRC is damaged.
    """
    with fileio.open_read(path) as raw:
        f = gzip.GzipFile(fileobj=raw) if compression == "gzip" else raw
        for index, item in tfrecord.iter_records(f):
            if isinstance(item, tfrecord.ReadError):
                raise publish.IncompleteOutputError(
                    f"Invalid shard {path!r}. Expected intact TFRecords. Received: "
                    f"record {index}: {item.detail}. Rerun the job with --overwrite."
                )
            yield item


def _records(files, compression: str):
    """Records of `files` (a dataset of paths): TensorFlow's reader for local
    files, `iter_shard_records` (a generator) for remote ones."""
    if not any(fileio.is_remote(f) for f in files):
        return lambda f: tf.data.TFRecordDataset(
            f, compression_type="GZIP" if compression == "gzip" else ""
        )

    def generate(path):
        yield from iter_shard_records(path.decode(), compression)

    return lambda f: tf.data.Dataset.from_generator(
        generate, args=(f,), output_signature=tf.TensorSpec([], tf.string)
    )


def _context_parse_spec(context: dict) -> dict:
    spec = {}
    for name, entry in context.items():
        dtype = tf.as_dtype(entry["dtype"])
        spec[name] = tf.io.VarLenFeature(dtype)
        if entry["kind"] == "var_len":
            spec[f"{name}/row_lengths"] = tf.io.VarLenFeature(tf.int64)
    return spec


def load_dataset(
    directory: str, shuffle_batches: bool = False, seed: int | None = None
) -> tf.data.Dataset:
    """A dataset of batches `{'sequence_input': float32 [B, T, D],
    'sequence_length': int64 [B], <context name>: [B, ...] (VarLen: ragged)}`.

    Args:
      directory: A seqshards output directory DIR.
      shuffle_batches: Shuffle the shard order and the batches (buffer of 256).
      seed: Shuffle seed.
    """
    metadata = load_metadata(directory)
    d = int(metadata["feature_dim"])
    context = metadata.get("context", {})
    files = [f"{directory.rstrip('/')}/{s['file']}" for s in metadata["shards"]]
    spec = {
        "sequence_input": tf.io.FixedLenFeature([], tf.string),
        "shape": tf.io.FixedLenFeature([3], tf.int64),
        "sequence_length": tf.io.VarLenFeature(tf.int64),
        **_context_parse_spec(context),
    }

    def parse(record):
        parsed = tf.io.parse_single_example(record, spec)
        shape = parsed["shape"]
        x = tf.io.decode_raw(parsed["sequence_input"], tf.float32, little_endian=True)
        x = tf.ensure_shape(tf.reshape(x, shape), [None, None, d])
        out = {
            "sequence_input": x,
            "sequence_length": tf.ensure_shape(
                tf.sparse.to_dense(parsed["sequence_length"]), [None]
            ),
        }
        for name, entry in context.items():
            values = tf.sparse.to_dense(parsed[name])
            if entry["kind"] == "var_len":
                lengths = tf.sparse.to_dense(parsed[f"{name}/row_lengths"])
                out[name] = tf.RaggedTensor.from_row_lengths(values, lengths)
            else:
                fixed = [int(v) for v in entry["shape"]]
                out[name] = tf.ensure_shape(
                    tf.reshape(values, [shape[0], *fixed]), [None, *fixed]
                )
        return out

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string))
    if shuffle_batches and files:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(
        _records(files, metadata.get("compression", "none")),
        cycle_length=max(1, min(4, len(files))),
        num_parallel_calls=max(1, min(4, len(files))),
        deterministic=not shuffle_batches,
    )
    if shuffle_batches:
        ds = ds.shuffle(256, seed=seed)
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if all("batches" in s for s in metadata["shards"]):
        # The number of batches is on record: Keras then knows an epoch's length.
        batches = sum(int(s["batches"]) for s in metadata["shards"])
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    return ds
