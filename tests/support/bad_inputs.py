"""The bad-input catalog: named generators of bad records, files and job setups.

Each `Case` documents one kind of bad input and its outcome:
  * level "record": records placed in the catalog input; every record has an
    expected outcome, a dead-letter `Reason` value or WRITTEN;
  * level "framing": raw bytes inside a TFRecord file (damage to the framing);
  * level "job": a job set up wrongly (paths, columns file, output); the outcome is
    the exception raised before any work starts, with a message naming the file
    and what to do.
`write_catalog` lays every record and framing case into a few input files (with
good records around them) and returns where each expected outcome is, so ONE job
run per engine checks them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from pipeline_data import frame

WRITTEN = "written"
GENRES = [b"action", b"comedy", b"drama", b"horror"]
NUM_IDS = 50
POS_WIDTH = 3
LONG_STEPS = 1_000_000
MAX_LENGTH = 1000  # --max_sequence_length of the catalog runs

CATALOG_YAML = f"""
columns:
  - {{kind: numeric, key: rating}}
  - {{kind: numeric, key: pos, shape: [{POS_WIDTH}]}}
  - kind: embedding
    dimension: 4
    categorical: {{kind: identity, key: watches, num_buckets: {NUM_IDS}}}
  - kind: indicator
    categorical:
      kind: vocabulary_list
      key: genre
      vocabulary: [action, comedy, drama, horror]
  - kind: embedding
    dimension: 2
    categorical: {{kind: hash_bucket, key: tags, hash_bucket_size: 16}}
context:
  id: {{dtype: string}}
  label: {{dtype: int64}}
"""


def default_steps(n: int) -> dict[str, list]:
    return {
        "rating": [[0.5 + i] for i in range(n)],
        "pos": [[float(i), i + 0.5, -float(i)] for i in range(n)],
        "watches": [[i % NUM_IDS] for i in range(n)],
        "genre": [[GENRES[i % len(GENRES)]] for i in range(n)],
        "tags": [[b"t%d" % (i % 7)] for i in range(n)],
    }


def _fill(feature: tf.train.Feature, values) -> None:
    if not values:
        return  # an empty step: a Feature with no list set
    if isinstance(values[0], bytes):
        feature.bytes_list.value.extend(values)
    elif isinstance(values[0], float):
        feature.float_list.value.extend(values)
    else:
        feature.int64_list.value.extend(values)


def record(
    ident: str,
    n: int = 3,
    *,
    lists: dict | None = None,
    context: dict | None = None,
    omit=(),
) -> bytes:
    """A SequenceExample of `n` steps; `lists` overrides per-step values (their
    Python type picks the list kind), `context` overrides context values (None:
    omitted), `omit` drops feature lists."""
    ex = tf.train.SequenceExample()
    ctx = {"id": [ident.encode()], "label": [1]}
    ctx.update(context or {})
    for name, values in ctx.items():
        if values is not None:
            _fill(ex.context.feature[name], values)
    steps = default_steps(n)
    steps.update(lists or {})
    for key, per_step in steps.items():
        if key in omit:
            continue
        feature_list = ex.feature_lists.feature_list[key]
        for values in per_step:
            _fill(feature_list.feature.add(), values)
    return ex.SerializeToString(deterministic=True)


def good(rng: np.random.Generator, ident: str) -> bytes:
    n = int(rng.integers(1, 12))
    return record(
        ident,
        n,
        lists={"rating": [[float(np.round(rng.uniform(0, 5), 1))] for _ in range(n)]},
    )


def _len_field(number: int, payload: bytes) -> bytes:
    def varint(v):
        out = bytearray()
        while True:
            out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
            v >>= 7
            if not v:
                return bytes(out)

    return varint((number << 3) | 2) + varint(len(payload)) + payload


def long_record(ident: str, steps: int = LONG_STEPS) -> bytes:
    """A valid record of `steps` steps in every list, built on the wire (fast)."""
    one = tf.train.SequenceExample.FromString(record(ident, 1))
    out = [_len_field(1, one.context.SerializeToString(deterministic=True))]
    entries = []
    for key in sorted(one.feature_lists.feature_list):
        feature = one.feature_lists.feature_list[key].feature[0]
        step = _len_field(1, feature.SerializeToString(deterministic=True))
        entries.append(
            _len_field(1, _len_field(1, key.encode()) + _len_field(2, step * steps))
        )
    out.append(_len_field(2, b"".join(entries)))
    return b"".join(out)


@dataclasses.dataclass(frozen=True)
class Case:
    """One catalog entry.

    Attributes:
      name: Stable test id.
      level: "record", "framing" or "job".
      make: record: `() -> [(bytes, outcome)]`; framing: `() -> [(raw bytes,
        outcome)]` (each raw chunk is one position); job: see `JOB_CASES`.
      outcome: The documented outcome (for the table).
    """

    name: str
    level: str
    make: Callable
    outcome: str


def _one(data_fn: Callable[[], bytes], outcome: str) -> Callable:
    return lambda: [(data_fn(), outcome)]


def _random_bytes() -> bytes:
    # Seeded; checked to be no valid SequenceExample (field 0 is never valid).
    return b"\x00" + np.random.default_rng(3).bytes(200)


def _flip_data() -> bytes:
    raw = bytearray(frame(record("lost-flip-data", 4)))
    raw[20] ^= 0x40
    return bytes(raw)


def _flip_header() -> bytes:
    raw = bytearray(frame(record("lost-flip-header", 4)))
    raw[3] ^= 0xFF  # the length: its CRC no longer matches, reading resyncs
    return bytes(raw)


RECORD_CASES = [
    Case(
        "zero_length_record",
        "record",
        _one(lambda: b"", "missing_feature"),
        "missing_feature (an empty proto: no context, no lists)",
    ),
    Case(
        "random_bytes",
        "record",
        _one(_random_bytes, "not_a_sequence_example"),
        "not_a_sequence_example",
    ),
    Case(
        "truncated_proto",
        "record",
        _one(lambda: record("half", 5)[:-9], "not_a_sequence_example"),
        "not_a_sequence_example",
    ),
    Case(
        "tf_example_instead",
        "record",
        _one(
            lambda: tf.train.Example(
                features=tf.train.SequenceExample.FromString(record("ex")).context
            ).SerializeToString(),
            "missing_feature",
        ),
        "missing_feature ('no feature lists at all: a tf.train.Example?')",
    ),
    Case(
        "missing_feature_list",
        "record",
        _one(lambda: record("no-watches", omit=("watches",)), "missing_feature"),
        "missing_feature",
    ),
    Case(
        "missing_context_feature",
        "record",
        _one(lambda: record("no-label", context={"label": None}), "missing_feature"),
        "missing_feature",
    ),
    Case(
        "bytes_where_float",
        "record",
        _one(
            lambda: record("b4f", 2, lists={"rating": [[b"x"], [b"y"]]}), "wrong_dtype"
        ),
        "wrong_dtype",
    ),
    Case(
        "int_where_float",
        "record",
        _one(lambda: record("i4f", 2, lists={"rating": [[1], [2]]}), "wrong_dtype"),
        "wrong_dtype",
    ),
    Case(
        "float_where_int",
        "record",
        _one(
            lambda: record("f4i", 2, lists={"watches": [[1.0], [2.0]]}), "wrong_dtype"
        ),
        "wrong_dtype",
    ),
    Case(
        "float_where_bytes",
        "record",
        _one(lambda: record("f4b", 2, lists={"genre": [[1.0], [2.0]]}), "wrong_dtype"),
        "wrong_dtype",
    ),
    Case(
        "context_wrong_dtype",
        "record",
        _one(lambda: record("ctx-dtype", context={"label": [b"1"]}), "wrong_dtype"),
        "wrong_dtype",
    ),
    Case(
        "context_two_values",
        "record",
        _one(lambda: record("ctx-size", context={"label": [1, 2]}), "wrong_shape"),
        "wrong_shape",
    ),
    Case(
        "negative_id",
        "record",
        _one(
            lambda: record("neg-id", 2, lists={"watches": [[3], [-1]]}),
            "id_out_of_range",
        ),
        "id_out_of_range",
    ),
    Case(
        "id_equal_num_buckets",
        "record",
        _one(
            lambda: record("big-id", 2, lists={"watches": [[NUM_IDS], [1]]}),
            "id_out_of_range",
        ),
        "id_out_of_range",
    ),
    Case(
        "nan",
        "record",
        _one(
            lambda: record("nan", 2, lists={"rating": [[1.0], [float("nan")]]}),
            "non_finite",
        ),
        "non_finite",
    ),
    Case(
        "inf_in_shaped_column",
        "record",
        _one(
            lambda: record(
                "inf", 2, lists={"pos": [[1.0, 2.0, 3.0], [float("-inf"), 0.0, 1.0]]}
            ),
            "non_finite",
        ),
        "non_finite",
    ),
    Case(
        "width_too_small",
        "record",
        _one(
            lambda: record("narrow", 2, lists={"pos": [[1.0, 2.0, 3.0], [1.0, 2.0]]}),
            "wrong_shape",
        ),
        "wrong_shape (values per step != 3)",
    ),
    Case(
        "width_too_large",
        "record",
        _one(
            lambda: record("wide", 1, lists={"pos": [[1.0, 2.0, 3.0, 4.0]]}),
            "wrong_shape",
        ),
        "wrong_shape",
    ),
    Case(
        "unequal_lengths",
        "record",
        _one(
            lambda: record("unequal", 3, lists={"watches": [[1], [2]]}),
            "unequal_lengths",
        ),
        "unequal_lengths",
    ),
    Case(
        "trailing_empty_categorical_step",
        "record",
        _one(
            lambda: record("trail", 3, lists={"genre": [[b"drama"], [b"comedy"], []]}),
            "unequal_lengths",
        ),
        "unequal_lengths (reference length of genre is 2)",
    ),
    Case(
        "empty_sequence",
        "record",
        _one(lambda: record("empty", 0), "empty_sequence"),
        "empty_sequence (dead-lettered, not written with length 0)",
    ),
    Case(
        "long_sequence_1e6",
        "record",
        _one(lambda: long_record("long"), "too_long"),
        f"too_long with --max_sequence_length {MAX_LENGTH} (truncate: written, "
        f"{MAX_LENGTH} steps; no limit: written)",
    ),
    Case(
        "non_utf8_vocabulary_value",
        "record",
        _one(
            lambda: record(
                "non-utf8-vocab", 2, lists={"genre": [[b"\xff\xfe"], [b"drama"]]}
            ),
            WRITTEN,
        ),
        "written: bytes are valid TF strings; a vocabulary miss (default id -1: "
        "zero indicator)",
    ),
    Case(
        "non_utf8_hash_value",
        "record",
        _one(
            lambda: record(
                "non-utf8-hash", 2, lists={"tags": [[b"\xc3\x28"], [b"ok"]]}
            ),
            WRITTEN,
        ),
        "written: hashed like any bytes",
    ),
    Case(
        "extra_unknown_feature_list",
        "record",
        _one(lambda: record("extra", 2, lists={"unused": [[1.0], [2.0]]}), WRITTEN),
        "written: lists no column reads are ignored",
    ),
    Case(
        "duplicate_id_same_file",
        "record",
        lambda: [(record("dup-a", 2), WRITTEN), (record("dup-a", 3), "duplicate_id")],
        "duplicate_id for the later one; the one at the smallest position is kept",
    ),
]

FRAMING_CASES = [
    Case(
        "flipped_data_byte",
        "framing",
        _one(_flip_data, "corrupt_record"),
        "corrupt_record (data CRC mismatch); reading goes on",
    ),
    Case(
        "flipped_length_header",
        "framing",
        _one(_flip_header, "corrupt_record"),
        "corrupt_record (length CRC mismatch); resync to the next record",
    ),
]

# Cases that need their own place in the layout (see write_catalog).
LAYOUT_CASES = [
    Case(
        "duplicate_id_across_files",
        "record",
        None,
        "duplicate_id: kept in file 0 (record > 1024, a later chunk), "
        "dead-lettered at file 1 record 0",
    ),
    Case(
        "truncated_file",
        "framing",
        None,
        "truncated_record (the file ends inside a record)",
    ),
    Case(
        "empty_file", "framing", None, "no records, no error (counted with 0 records)"
    ),
]


@dataclasses.dataclass
class Catalog:
    """Where everything is: `expected[(file basename, record index)] = (case,
    outcome, bytes or None)`; `good` = ids of the filler records."""

    paths: list
    expected: dict
    good: dict
    examples_in: int


def write_catalog(directory) -> Catalog:
    rng = np.random.default_rng(11)
    names = [f"catalog-{k:05d}.tfrecord" for k in range(3)]
    expected, written = {}, {}
    chunks: list[list[bytes]] = [[], [], []]

    def add_good(file: int, ident: str):
        data = good(rng, ident)
        written[ident.encode()] = data
        expected[(names[file], len(chunks[file]))] = ("good", WRITTEN, data)
        chunks[file].append(frame(data))

    n = 0
    for case in RECORD_CASES + FRAMING_CASES:
        for _ in range(2):
            add_good(0, f"g0-{n:05d}")
            n += 1
        for data, outcome in case.make():
            expected[(names[0], len(chunks[0]))] = (case.name, outcome, data)
            chunks[0].append(data if case.level == "framing" else frame(data))
    while len(chunks[0]) < 1100:  # past the tfdata engine's first chunk (1024)
        add_good(0, f"g0-{n:05d}")
        n += 1
    # duplicate_id_across_files: the kept one late in file 0, the later one first
    # in file 1 (read earlier than it if the files were interleaved).
    kept = record("dup-x", 4)
    expected[(names[0], len(chunks[0]))] = ("duplicate_id_across_files", WRITTEN, kept)
    chunks[0].append(frame(kept))
    add_good(0, f"g0-{n:05d}")
    later = record("dup-x", 2)
    expected[(names[1], 0)] = ("duplicate_id_across_files", "duplicate_id", later)
    chunks[1].append(frame(later))
    for i in range(30):
        add_good(1, f"g1-{i:05d}")
    tail = frame(record("lost-tail", 6))[:-11]
    expected[(names[1], len(chunks[1]))] = ("truncated_file", "truncated_record", tail)
    chunks[1].append(tail)
    paths = []
    for name, parts in zip(names, chunks, strict=True):
        path = directory / name
        path.write_bytes(b"".join(parts))  # file 2 stays empty (empty_file)
        paths.append(str(path))
    return Catalog(paths, expected, written, sum(len(c) for c in chunks))


# --- job-level cases -----------------------------------------------------------------
# Each: name -> (setup(tmp_path, base) -> JobConfig kwargs, exception type, message
# fragments). `base` holds a good input glob and columns file.


def _job_cases():
    def with_input(pattern):
        return lambda t, b: dict(b, input_pattern=pattern(t, b))

    def directory_matched(t, b):
        (t / "in").mkdir()
        (t / "in" / "a.tfrecord").write_bytes(frame(record("a")))
        (t / "in" / "b.tfrecord").mkdir()
        return dict(b, input_pattern=str(t / "in" / "*.tfrecord"))

    def broken_link(t, b):
        (t / "in").mkdir()
        (t / "in" / "a.tfrecord").write_bytes(frame(record("a")))
        (t / "in" / "b.tfrecord").symlink_to(t / "gone.tfrecord")
        return dict(b, input_pattern=str(t / "in" / "*.tfrecord"))

    def unreadable(t, b):
        path = t / "secret.tfrecord"
        path.write_bytes(frame(record("a")))
        path.chmod(0)
        return dict(b, input_pattern=str(path))

    def columns(text, name="columns.yaml", py=False):
        def setup(t, b):
            (t / name).write_text(text)
            key = "columns_py" if py else "columns_file"
            out = dict(b, columns_file="", columns_py="")
            out[key] = str(t / name)
            return out

        return setup

    def output(make):
        def setup(t, b):
            return dict(b, output_dir=make(t))

        return setup

    def a_file(t):
        (t / "out").write_text("x")
        return str(t / "out")

    def under_a_file(t):
        (t / "file").write_text("x")
        return str(t / "file" / "out")

    def not_empty(t):
        (t / "out").mkdir()
        (t / "out" / "keep.txt").write_text("x")
        return str(t / "out")

    return {
        "empty_input_glob": (
            with_input(lambda t, b: ""),
            ValueError,
            ["non-empty glob"],
        ),
        "glob_matching_no_file": (
            with_input(lambda t, b: str(t / "nothing-*.tfrecord")),
            FileNotFoundError,
            ["no file matches", "nothing-*.tfrecord"],
        ),
        "unreadable_input_directory": (
            directory_matched,
            IsADirectoryError,
            ["b.tfrecord", "is a directory", "narrow the glob"],
        ),
        "unreadable_input_broken_symlink": (
            broken_link,
            FileNotFoundError,
            ["b.tfrecord", "broken symbolic link"],
        ),
        "unreadable_input_permissions": (
            unreadable,
            PermissionError,
            ["secret.tfrecord", "cannot be read", "fix its permissions"],
        ),
        "columns_yaml_syntax_error": (
            columns("columns:\n  - {kind: numeric, key: a\n"),
            ValueError,
            ["columns.yaml", "syntax error at line 3", "Fix the YAML"],
        ),
        "columns_py_syntax_error": (
            columns("COLUMNS = [\n", name="columns.py", py=True),
            ValueError,
            ["columns.py", "syntax error at line", "Fix the Python syntax"],
        ),
        "columns_yaml_non_sequence_column": (
            columns("columns:\n  - {kind: identity, key: w, num_buckets: 3}\n"),
            ValueError,
            ["columns.yaml", "columns[0].kind", "wrap it"],
        ),
        "columns_py_non_sequence_column": (
            columns(
                "import tensorflow as tf\n"
                "COLUMNS = [tf.feature_column.numeric_column('x')]\n",
                name="columns.py",
                py=True,
            ),
            ValueError,
            ["COLUMNS[0]", "transforms.from_tf_feature_columns"],
        ),
        "columns_py_without_explicit_flag": (
            columns("raise SystemExit('executed!')\n", name="columns.py"),
            ValueError,
            ["columns.py", "--columns_py", "execute"],
        ),
        "columns_yaml_bad_value": (
            columns(
                "columns:\n  - {kind: indicator, categorical: {kind: identity, "
                "key: w, num_buckets: x}}\n"
            ),
            ValueError,
            ["columns[0].categorical.num_buckets: expected an int >= 1, got 'x'"],
        ),
        "output_is_a_file": (
            output(a_file),
            FileExistsError,
            ["existing file", "remove it or pick another path"],
        ),
        "output_under_a_file": (
            output(under_a_file),
            NotADirectoryError,
            ["is a file", "pick another --output"],
        ),
        "output_read_only": (
            output(lambda t: "/proc/seqshards-catalog-out"),
            PermissionError,
            ["/proc/seqshards-catalog-out", "pick a writable"],
        ),
        "output_not_empty": (output(not_empty), FileExistsError, ["--overwrite"]),
    }


JOB_CASES = _job_cases()

ALL_CASE_NAMES = (
    [c.name for c in RECORD_CASES + FRAMING_CASES + LAYOUT_CASES]
    + list(JOB_CASES)
    + ["metadata_unknown_version"]
)
