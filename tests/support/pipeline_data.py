"""Test data of the pipeline tests: SequenceExample builders, bad records and a
small dataset on disk (`write_dataset`). A module of its own, not conftest.py:
test files import it by a name no other test directory uses."""

import glob
import os
import struct

import numpy as np
import tensorflow as tf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

GENRES = [b"action", b"comedy", b"drama", b"horror"]
NUM_IDS = 50
BATCH_SIZE = 16

COLUMNS_PY = """
import tensorflow as tf
import transforms

COLUMNS = [
    transforms.sequence_numeric_column("rating"),
    transforms.embedding_column(
        transforms.sequence_categorical_column_with_identity("watches", num_buckets=50),
        dimension=4,
    ),
    transforms.indicator_column(
        transforms.sequence_categorical_column_with_vocabulary_list(
            "genre", ["action", "comedy", "drama", "horror"])
    ),
]
CONTEXT = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}
"""

# The same columns as a declarative spec (what `--columns` takes).
COLUMNS_YAML = """
columns:
  - {kind: numeric, key: rating}
  - kind: embedding
    dimension: 4
    categorical: {kind: identity, key: watches, num_buckets: 50}
  - kind: indicator
    categorical:
      kind: vocabulary_list
      key: genre
      vocabulary: [action, comedy, drama, horror]
context:
  id: {dtype: string}
  label: {dtype: int64}
"""


def make_record(
    ident: str = "x",
    ratings=(1.0, 2.0),
    watches=None,
    genres=None,
    label: int | None = 1,
    omit=(),
    steps=None,
) -> bytes:
    """A serialized SequenceExample; `steps` overrides a list's per-step values."""
    n = len(ratings)
    watches = [[i % NUM_IDS] for i in range(n)] if watches is None else watches
    genres = [[GENRES[i % len(GENRES)]] for i in range(n)] if genres is None else genres
    ex = tf.train.SequenceExample()
    ex.context.feature["id"].bytes_list.value.append(ident.encode())
    if label is not None:
        ex.context.feature["label"].int64_list.value.append(label)
    lists = ex.feature_lists.feature_list
    values = {
        "rating": [[r] if not isinstance(r, list) else r for r in ratings],
        "watches": watches,
        "genre": genres,
    }
    values.update(steps or {})
    for key, per_step in values.items():
        if key in omit:
            continue
        fl = lists[key]
        for step in per_step:
            f = fl.feature.add()
            if key == "rating":
                if step and isinstance(step[0], bytes):
                    f.bytes_list.value.extend(step)
                else:
                    f.float_list.value.extend(step)
            elif key == "watches":
                f.int64_list.value.extend(step)
            else:
                f.bytes_list.value.extend(step)
    return ex.SerializeToString(deterministic=True)


def good_record(rng: np.random.Generator, ident: str) -> bytes:
    n = int(np.clip(np.round(rng.lognormal(np.log(8), 0.8)), 1, 60))
    ratings = np.round(rng.uniform(0.5, 5.0, n), 1).tolist()
    watches = [[int(w)] for w in rng.integers(0, NUM_IDS, n)]
    genres = [[GENRES[int(g)]] for g in rng.integers(0, len(GENRES), n)]
    if n > 2:  # a multivalent step and an empty genre step in the middle
        genres[1] = [GENRES[0], GENRES[2]]
        genres[n // 2] = [] if n // 2 != n - 1 else genres[n // 2]
    return make_record(
        ident, ratings, watches, genres, label=int(np.mean(ratings) > 2.75)
    )


# Bad records of issue 3 item 7 that live inside a TFRecord (reason -> record).
def bad_records() -> dict[str, bytes]:
    return {
        "not_a_sequence_example": b"\xff\xfe\xfd this is not a proto \x00\x01",
        "missing_feature": make_record("bad-missing", omit=("watches",)),
        "missing_context": make_record("bad-ctx", label=None),
        "example_proto": tf.train.Example().SerializeToString(),
        "wrong_dtype": make_record("bad-dtype", steps={"rating": [[b"x"], [b"y"]]}),
        "id_out_of_range": make_record("bad-id", watches=[[3], [NUM_IDS]]),
        "negative_id": make_record("bad-neg", watches=[[-1], [2]]),
        "unequal_lengths": make_record("bad-len", watches=[[1], [2], [3]]),
        "empty_sequence": make_record("bad-empty", ratings=(), watches=[], genres=[]),
        "non_finite": make_record("bad-nan", ratings=(1.0, float("nan"))),
        "wrong_shape": make_record("bad-shape", ratings=([1.0, 2.0], [3.0])),
    }


EXPECTED_REASON = {
    "not_a_sequence_example": "not_a_sequence_example",
    "missing_feature": "missing_feature",
    "missing_context": "missing_feature",
    "example_proto": "missing_feature",
    "wrong_dtype": "wrong_dtype",
    "id_out_of_range": "id_out_of_range",
    "negative_id": "id_out_of_range",
    "unequal_lengths": "unequal_lengths",
    "empty_sequence": "empty_sequence",
    "non_finite": "non_finite",
    "wrong_shape": "wrong_shape",
}


def dir_bytes(directory) -> dict[str, bytes]:
    """Relative path -> bytes of every file under `directory` (run outputs)."""
    out = {}
    for path in sorted(glob.glob(f"{directory}/**/*", recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def frame(data: bytes) -> bytes:
    from pipeline.stages.tfrecord import masked_crc32c

    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def write_dataset(directory) -> dict:
    """Writes 3 input files; returns the expected facts."""
    rng = np.random.default_rng(7)
    good = {}
    # File 0: good records only.
    f0 = [good_record(rng, f"ok-0-{i:04d}") for i in range(150)]
    # File 1: good records with every proto-level bad kind interleaved.
    f1, bad_positions = [], {}
    bads = list(bad_records().items())
    for i in range(100):
        f1.append(good_record(rng, f"ok-1-{i:04d}"))
        if i % 9 == 4 and bads:
            name, data = bads.pop(0)
            bad_positions[name] = (1, len(f1))
            f1.append(data)
    assert not bads
    # File 2: good, one flipped data byte (corrupt), good, truncated tail.
    f2a = [good_record(rng, f"ok-2-{i:04d}") for i in range(30)]
    corrupt = bytearray(frame(good_record(rng, "lost-corrupt")))
    corrupt[20] ^= 0xFF
    f2b = [good_record(rng, f"ok-2-{i:04d}") for i in range(30, 40)]
    truncated = frame(good_record(rng, "lost-truncated"))[:-7]
    paths = [str(directory / f"in-{k:05d}.tfrecord") for k in range(3)]
    with open(paths[0], "wb") as f:
        f.write(b"".join(frame(r) for r in f0))
    with open(paths[1], "wb") as f:
        f.write(b"".join(frame(r) for r in f1))
    with open(paths[2], "wb") as f:
        f.write(
            b"".join(frame(r) for r in f2a)
            + bytes(corrupt)
            + b"".join(frame(r) for r in f2b)
            + truncated
        )
    for r in f0 + [r for r in f1 if r not in bad_records().values()] + f2a + f2b:
        ex = tf.train.SequenceExample.FromString(r)
        good[ex.context.feature["id"].bytes_list.value[0]] = r
    return {
        "paths": paths,
        "good": good,
        "bad_positions": bad_positions,
        "examples_in": len(f0) + len(f1) + len(f2a) + 1 + len(f2b) + 1,
        "corrupt_position": (2, 30),
        "truncated_position": (2, 41),
    }


def run_job(dataset: dict, out, engine: str = "beam", beam_argv=(), **kw):
    """Runs the job on the `dataset` fixture's data into `out` (progress off,
    batch size `BATCH_SIZE`); `kw`: more `JobConfig` fields."""
    from pipeline import driver
    from pipeline.stages.config import JobConfig

    config = JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=str(out),
        columns_file=dataset["columns"],
        batch_size=BATCH_SIZE,
        engine=engine,
        progress=False,
        **kw,
    )
    return driver.run(config, list(beam_argv))


def lognormal_examples(seed: int, n: int = 700):
    """Positions int64 [n, 2] (3 files) and lognormal lengths [n] (median 20,
    clipped to 1..300): the bench data's shape, small, for the plan tests."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(20), 0.9, n)), 1, 300).astype(int)
    positions = np.stack([rng.integers(0, 3, n), np.arange(n)], axis=1)
    return positions, lengths
