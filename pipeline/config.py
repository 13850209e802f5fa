"""Job configuration: the frozen `JobConfig` and columns-file loading.

Place in the flow: `__main__` (argparse) -> **config** -> job.run / tfdata_engine.run.
A columns file is a Python file defining `COLUMNS` (a list of `transforms`
sequence dense columns) and optionally `CONTEXT` (dict: context feature name ->
`tf.io.FixedLenFeature` / `tf.io.VarLenFeature`), carried into every batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import runpy
from collections.abc import Mapping, Sequence

ENGINES = ("beam", "tfdata")
# Keys of the output record; context features may not use them.
RESERVED_KEYS = ("sequence_input", "shape", "sequence_length", "example_id")


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """All options of one materialization run (flags map 1:1 onto fields).

    Attributes:
      input_pattern: Glob of the input SequenceExample TFRecord files.
      output_dir: Output directory DIR.
      columns_file: Path of the columns file.
      batch_size: Examples per output batch B.
      bucket_boundaries: "auto" or sorted upper bounds (bucket i holds lengths
        <= boundaries[i]; the last bucket is unbounded).
      num_shards: Number of output shards; None picks one per 256 MiB of input.
      engine: "beam" or "tfdata".
      overwrite: Replace an existing non-empty DIR.
      id_feature: Context feature written as `example_id` when CONTEXT has it.
      progress: Log progress lines to stderr (both engines, see progress.py).
    """

    input_pattern: str
    output_dir: str
    columns_file: str
    batch_size: int = 64
    bucket_boundaries: tuple[int, ...] | str = "auto"
    num_shards: int | None = None
    engine: str = "beam"
    overwrite: bool = False
    id_feature: str = "id"
    progress: bool = True

    def __post_init__(self):
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
        if self.engine not in ENGINES:
            raise ValueError(
                f"Invalid value for argument `engine`. Expected one of {ENGINES}. "
                f"Received: engine={self.engine!r}"
            )
        bounds = self.bucket_boundaries
        if isinstance(bounds, str):
            if bounds != "auto":
                raise ValueError(
                    "Invalid value for argument `bucket_boundaries`. Expected 'auto' "
                    f"or a tuple of ints. Received: bucket_boundaries={bounds!r}"
                )
        elif (
            not bounds
            or any(b < 1 for b in bounds)
            or any(b <= a for a, b in zip(bounds, bounds[1:]))
        ):
            raise ValueError(
                "Invalid value for argument `bucket_boundaries`. Expected strictly "
                f"increasing ints >= 1. Received: bucket_boundaries={bounds!r}"
            )


@dataclasses.dataclass(frozen=True)
class ColumnsSpec:
    """The loaded columns file.

    Attributes:
      columns: The `transforms` sequence dense columns (COLUMNS).
      context: Context feature name -> parse spec (CONTEXT, may be empty).
      sha256: Hex digest of the columns file's bytes.
      path: Where it was loaded from.
    """

    columns: tuple
    context: Mapping[str, object]
    sha256: str
    path: str


def load_columns(path: str) -> ColumnsSpec:
    """Loads a columns file (Python: `COLUMNS`, optional `CONTEXT`).

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: if COLUMNS / CONTEXT are missing or malformed.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            "Invalid value for argument `columns`. Expected an existing columns file. "
            f"Received: columns={path!r}"
        )
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    namespace = runpy.run_path(path, run_name="seqshards_columns")
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
    for column in columns:
        if not hasattr(column, "parse_example_spec") or not hasattr(column, "name"):
            raise ValueError(
                "Invalid item in `COLUMNS`. "
                "Expected a transforms sequence dense column "
                "(e.g. sequence_numeric_column, embedding_column, indicator_column). "
                f"Received: {column!r}"
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
