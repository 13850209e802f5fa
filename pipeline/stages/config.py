"""Job configuration: the frozen `JobConfig` and columns-file loading.

Place in the flow: the CLI (`pipeline.cli`, argparse) -> **config** -> the driver
(`pipeline.driver.run`) -> an engine.
The columns are given by a declarative spec (`--columns FILE.yaml|.json`, see
`spec`: parsed with a safe YAML loader, no code runs) or, only when asked for
explicitly, by a Python file (`--columns_py FILE.py`, executed) defining `COLUMNS`
(a list of `transforms` sequence dense columns) and optionally `CONTEXT` (dict:
context feature name -> `tf.io.FixedLenFeature` / `tf.io.VarLenFeature`), carried
into every batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import runpy
from collections.abc import Mapping, Sequence

from pipeline.stages import fileio

ENGINES = ("beam", "tfdata")
COMPRESSIONS = ("none", "gzip")
# What the Beam job's grouping steps carry per record (`--shuffle_payload`;
# "auto": `shuffle_payload_for` the input).
SHUFFLE_PAYLOADS = ("auto", "bytes", "reference")
ON_LONG = ("dead_letter", "truncate")
ON_INVALID = ("dead_letter", "fail")
# Keys of the output record; context features may not use them.
RESERVED_KEYS = ("sequence_input", "shape", "sequence_length", "example_id")


def valid_boundaries(values: Sequence[int]) -> bool:
    """Bucket boundaries: at least one, ints >= 1, strictly increasing."""
    return (
        bool(values)
        and all(v >= 1 for v in values)
        and all(b > a for a, b in zip(values, values[1:], strict=False))
    )


def check_max_buckets(max_buckets: int | None) -> None:
    """Raises ValueError unless `max_buckets` (`--max_buckets K`) is None or an
    int >= 1 (the job config and the bounded search both check it)."""
    if max_buckets is not None and (
        not isinstance(max_buckets, int) or isinstance(max_buckets, bool)
        or max_buckets < 1
    ):  # fmt: skip
        raise ValueError(
            "Invalid value for argument `max_buckets`. Expected an int >= 1 or "
            f"None (unbounded). Received: max_buckets={max_buckets!r}"
        )


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """All options of one materialization run (flags map 1:1 onto fields).

    Attributes:
      input_pattern: Glob of the input SequenceExample TFRecord files.
      output_dir: Output directory DIR.
      columns_file: Path of the declarative columns spec (YAML/JSON); exactly one
        of `columns_file` and `columns_py` is set.
      batch_size: Examples per output batch B.
      bucket_boundaries: "auto" or sorted upper bounds (bucket i holds lengths
        <= boundaries[i]; the last bucket is unbounded).
      num_shards: Number of output shards; None picks one per 256 MiB of input.
      engine: "beam" or "tfdata".
      overwrite: Replace an existing non-empty DIR.
      id_feature: Context feature written as `example_id` when CONTEXT has it.
      columns_py: Path of a Python columns file (executed; explicit opt-in).
      max_sequence_length: Longest sequence accepted (steps per feature list),
        None for no limit.
      on_long: What happens to longer records: "dead_letter" (reason
        `too_long`) or "truncate" (keep the first `max_sequence_length` steps).
      on_invalid: NaN/Inf and out-of-range ids: "dead_letter" or "fail" (stop
        the job naming the first offending record).
      progress: Log progress lines to stderr (both engines, see `stages.progress`).
      analyze: Run the analyze pass first (vocabularies, normalizer statistics
        the columns spec asks for; `stages.analysis`).
      max_buckets: At most this many auto buckets (None: unbounded).
      static_shapes: T fixed per bucket, every batch B examples but at most
        one (`stages.static_shapes`).
      drop_remainder: With `static_shapes`: drop the buckets' remainders
        (listed in dropped/) instead of batching them together.
    """

    input_pattern: str
    output_dir: str
    columns_file: str = ""
    batch_size: int = 64
    bucket_boundaries: tuple[int, ...] | str = "auto"
    num_shards: int | None = None
    engine: str = "beam"
    overwrite: bool = False
    id_feature: str = "id"
    progress: bool = True
    columns_py: str = ""
    max_sequence_length: int | None = None
    on_long: str = "dead_letter"
    on_invalid: str = "dead_letter"
    analyze: bool = False
    compression: str = "none"
    max_buckets: int | None = None
    static_shapes: bool = False
    drop_remainder: bool = False
    shuffle_payload: str = "auto"
    # --engine tfdata: worker processes for the main pass (0: all in this
    # process; None: "auto", one per core from tfdata.workers.MIN_CORES).
    tfdata_workers: int | None = None

    def __post_init__(self):
        if not self.input_pattern:
            raise ValueError(
                "Invalid value for argument `input`. Expected a non-empty glob of "
                f"TFRecord files. Received: input={self.input_pattern!r}"
            )
        for flag, value in (
            ("input", self.input_pattern),
            ("output", self.output_dir),
            ("columns", self.columns_file),
            ("columns_py", self.columns_py),
        ):
            fileio.check_supported(value, flag)  # before any work
        if bool(self.columns_file) == bool(self.columns_py):
            raise ValueError(
                "Expected exactly one of `columns` (a YAML/JSON columns spec) and "
                "`columns_py` (a Python columns file, executed). Received: "
                f"columns={self.columns_file!r}, columns_py={self.columns_py!r}"
            )
        if self.max_sequence_length is not None and (
            not isinstance(self.max_sequence_length, int)
            or self.max_sequence_length < 1
        ):
            raise ValueError(
                "Invalid value for argument `max_sequence_length`. Expected an int "
                f">= 1 or None. Received: max_sequence_length="
                f"{self.max_sequence_length!r}"
            )
        for name, options in (("on_long", ON_LONG), ("on_invalid", ON_INVALID)):
            if getattr(self, name) not in options:
                raise ValueError(
                    f"Invalid value for argument `{name}`. Expected one of {options}. "
                    f"Received: {name}={getattr(self, name)!r}"
                )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(
                "Invalid value for argument `batch_size`. Expected an int >= 1. "
                f"Received: batch_size={self.batch_size!r}"
            )
        if self.num_shards is not None and (
            not isinstance(self.num_shards, int) or self.num_shards < 1
        ):
            raise ValueError(
                "Invalid value for argument `num_shards`. Expected an int >= 1. "
                f"Received: num_shards={self.num_shards!r}"
            )
        if self.tfdata_workers is not None and (
            not isinstance(self.tfdata_workers, int) or self.tfdata_workers < 0
        ):
            raise ValueError(
                "Invalid value for argument `tfdata_workers`. Expected an int >= 0 "
                f"or None (auto). Received: tfdata_workers={self.tfdata_workers!r}"
            )
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                "Invalid value for argument `compression`. Expected one of "
                f"{COMPRESSIONS}. Received: compression={self.compression!r}"
            )
        if self.shuffle_payload not in SHUFFLE_PAYLOADS:
            raise ValueError(
                "Invalid value for argument `shuffle_payload`. Expected one of "
                f"{SHUFFLE_PAYLOADS}. Received: shuffle_payload={self.shuffle_payload!r}"
            )
        if self.engine not in ENGINES:
            raise ValueError(
                f"Invalid value for argument `engine`. Expected one of {ENGINES}. "
                f"Received: engine={self.engine!r}"
            )
        self._check_static()
        bounds = self.bucket_boundaries
        if isinstance(bounds, str):
            if bounds != "auto":
                raise ValueError(
                    "Invalid value for argument `bucket_boundaries`. Expected 'auto' "
                    f"or a tuple of ints. Received: bucket_boundaries={bounds!r}"
                )
        elif not valid_boundaries(bounds):
            raise ValueError(
                "Invalid value for argument `bucket_boundaries`. Expected strictly "
                f"increasing ints >= 1. Received: bucket_boundaries={bounds!r}"
            )

    def shuffle_payload_for(self, files: Sequence[str], *, in_process: bool) -> str:
        """The Beam job's shuffle payload for these input files: the flag, or
        for "auto" the records' bytes (the input read once) where the grouping
        steps carry them cheaply, references (the valid records read twice)
        where a second read measures cheaper:
        - on an object store (`gs://`, `s3://`): bytes, since a reference
          would cost a ranged read per record, with every worker reading
          nearly every file;
        - `in_process` (the bundle-based direct runner: `runner.groups_objects`):
          bytes. That runner groups Python objects, without copies, and holds
          the input read either way (peak RSS ~1.2 GB plus ~1.3x the input
          with either payload, measured at 200k and 2M examples);
        - otherwise (local files on the FnApiRunner, a local Flink or Spark):
          references, read again from the page cache, where the runner would
          encode, copy and hold the bytes (measured on the FnApiRunner
          in-process: half the CPU and a third of the memory)."""
        if self.shuffle_payload != "auto":
            return self.shuffle_payload
        if in_process or any(fileio.is_remote(f) for f in files):
            return "bytes"
        return "reference"

    def _check_static(self) -> None:
        check_max_buckets(self.max_buckets)
        if self.drop_remainder and not self.static_shapes:
            raise ValueError(
                "Invalid value for argument `drop_remainder`. Expected it only with "
                "`static_shapes` (dynamic batches keep every example). Received: "
                "drop_remainder=True, static_shapes=False; add --static_shapes."
            )
        bounds = self.bucket_boundaries
        if (
            self.max_buckets is not None
            and not isinstance(bounds, str)
            and len(bounds) + 1 > self.max_buckets
        ):
            raise ValueError(
                "Invalid value for argument `max_buckets`. Expected at least the "
                f"{len(bounds) + 1} buckets of the explicit `bucket_boundaries`. "
                f"Received: max_buckets={self.max_buckets!r}, bucket_boundaries="
                f"{bounds!r}; pass fewer boundaries or use 'auto'."
            )


@dataclasses.dataclass(frozen=True)
class ColumnsSpec:
    """The loaded columns file.

    Attributes:
      columns: The `transforms` sequence dense columns (COLUMNS).
      context: Context feature name -> parse spec (CONTEXT, may be empty).
      sha256: Hex digest of the columns file's bytes.
      path: Where it was loaded from.
      requests: What the columns ask the analyze pass for (`stages.analysis`
        `VocabularyRequest` / `StatsRequest`; empty for Python columns).
    """

    columns: tuple
    context: Mapping[str, object]
    sha256: str
    path: str
    requests: tuple = ()


def load_job_columns(config: JobConfig) -> ColumnsSpec:
    """The columns of a job: `config.columns_file` (spec) or `config.columns_py`.

    Raises:
      ValueError: the spec asks for analysis (a vocabulary file to compute, a
        `normalizer: zscore|minmax`) and `config.analyze` is false.
    """
    if config.columns_py:
        return load_columns(config.columns_py, allow_python=True)
    spec = load_columns(config.columns_file)
    if spec.requests and not config.analyze:
        where = ", ".join(sorted({r.where for r in spec.requests}))
        raise ValueError(
            f"Invalid columns spec {config.columns_file}: {where} need(s) the analyze "
            "pass (a vocabulary file to compute, or a normalizer computed from the "
            "data). Run with --analyze, or give the file / the constants."
        )
    return spec


def load_columns(
    path: str, *, allow_python: bool = False, analysis=None
) -> ColumnsSpec:
    """Loads a columns spec (YAML/JSON) or, if `allow_python`, a Python file.

    `analysis` (`analysis.Analysis`): build the analyzed columns of a spec with
    these results (see spec.parse).

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: a `.py` file without `allow_python`; an invalid spec
        (`spec.SpecError`, naming the key); COLUMNS / CONTEXT missing or malformed.
    """
    flag = "columns_py" if allow_python else "columns"
    fileio.check_supported(path, flag)
    if not fileio.isfile(path):
        raise FileNotFoundError(
            f"Invalid value for argument `{flag}`. Expected an existing columns file. "
            f"Received: {flag}={path!r}"
        )
    if not path.endswith(".py"):
        from pipeline.stages import spec as spec_lib

        requests: list = []
        columns, context, digest = spec_lib.load(
            path, analysis=analysis, requests=requests
        )
        spec = columns_spec(columns, context, sha256=digest, path=path)
        return dataclasses.replace(spec, requests=tuple(requests))
    if not allow_python:
        raise ValueError(
            f"Invalid value for argument `columns`. Expected a YAML or JSON columns "
            f"spec. Received: columns={path!r}, a Python file: running it would "
            "execute its code. Pass it as --columns_py to run it explicitly, or write "
            "the columns as YAML (see pipeline/README.md)."
        )
    if fileio.is_remote(path):
        raise ValueError(
            "Invalid value for argument `columns_py`. Expected a local Python file "
            f"(it is run with runpy). Received: columns_py={path!r}: copy it to a "
            "local path, or write the columns as YAML (which may be remote)."
        )
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    try:
        namespace = runpy.run_path(path, run_name="seqshards_columns")
    except SyntaxError as e:
        raise ValueError(
            f"Invalid columns file {path}: syntax error at line {e.lineno}: {e.msg}. "
            "Fix the Python syntax."
        ) from None
    return columns_spec(
        namespace.get("COLUMNS"),
        namespace.get("CONTEXT") or {},
        sha256=digest,
        path=path,
    )


def columns_spec(
    columns: Sequence,
    context: Mapping[str, object],
    *,
    sha256: str = "",
    path: str = "",
) -> ColumnsSpec:
    """Checks COLUMNS / CONTEXT and returns a `ColumnsSpec`."""
    import tensorflow as tf

    if not isinstance(columns, (list, tuple)) or not columns:
        raise ValueError(
            "Invalid value for `COLUMNS` in the columns file. "
            "Expected a non-empty list "
            f"of transforms sequence dense columns. Received: COLUMNS={columns!r}"
        )
    for i, column in enumerate(columns):
        # Dense sequence columns of `transforms` have an int `.output_width`;
        # tf.feature_column and categorical columns do not.
        if not isinstance(getattr(column, "output_width", None), int):
            raise ValueError(
                f"Invalid item COLUMNS[{i}]. Expected a transforms sequence dense "
                "column (sequence_numeric_column, embedding_column, "
                "indicator_column; convert tf.feature_column columns with "
                "transforms.from_tf_feature_columns, wrap categorical columns in "
                f"embedding_column/indicator_column). Received: {column!r}"
            )
    if not isinstance(context, Mapping):
        raise ValueError(
            "Invalid value for `CONTEXT` in the columns file. Expected a dict of "
            "name -> tf.io.FixedLenFeature/VarLenFeature. "
            f"Received: CONTEXT={context!r}"
        )
    for name, feature in context.items():
        if not isinstance(feature, (tf.io.FixedLenFeature, tf.io.VarLenFeature)):
            raise ValueError(
                f"Invalid value for CONTEXT[{name!r}]. "
                "Expected a tf.io.FixedLenFeature "
                f"or tf.io.VarLenFeature. Received: {feature!r}"
            )
        if name in RESERVED_KEYS or name.endswith("/row_lengths"):
            raise ValueError(
                f"Invalid CONTEXT name {name!r}. It collides with an output key "
                f"{RESERVED_KEYS} or the '/row_lengths' suffix; rename it."
            )
    return ColumnsSpec(tuple(columns), dict(context), sha256, path)


def context_spec_json(context: Mapping[str, object]) -> dict:
    """A JSON-able description of CONTEXT (for metadata.json and the reader)."""
    import tensorflow as tf

    out = {}
    for name, feature in sorted(context.items()):
        entry = {"dtype": tf.as_dtype(feature.dtype).name}
        if isinstance(feature, tf.io.FixedLenFeature):
            entry.update(kind="fixed_len", shape=[int(d) for d in feature.shape])
        else:
            entry.update(kind="var_len")
        out[name] = entry
    return out
