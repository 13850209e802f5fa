"""The declarative columns spec (YAML or JSON): checked, then built into columns.

Place in the flow: `__main__` -> config.load_columns -> **spec** -> ColumnsSpec.
Running someone's dataset config must execute no code: the file is read by a
`yaml.SafeLoader` (plain YAML types only; JSON is YAML; duplicate keys are
refused), every key is checked against the table `KINDS`, and the columns are
built by calling the `transforms` constructors with the checked values. Every
error names the file and the key path, e.g.
`columns[2].categorical.num_buckets: expected an int >= 1, got 'x'`.

Format (version 1):

    version: 1                        # optional
    columns:                          # non-empty list of dense sequence columns
      - kind: numeric
        key: rating
        shape: [1]                    # int or list of ints >= 1 (default [1])
        default_value: 0.0            # default 0.0
        dtype: float32                # a float or int dtype (default float32)
        normalizer: zscore            # optional: zscore | minmax (computed by
                                      # --analyze), or {kind: zscore, mean, std}
                                      # / {kind: minmax, min, max}
      - kind: embedding
        dimension: 10
        combiner: mean                # mean | sqrtn | sum (default mean)
        max_norm: 1.0                 # optional
        trainable: true               # default true
        initializer: {kind: truncated_normal, stddev: 0.3, seed: 7}   # optional
        checkpoint: {path: ckpt/model, tensor: emb/table}            # optional
        categorical: {kind: identity, key: watches, num_buckets: 1000}
      - kind: indicator
        categorical: {kind: vocabulary_list, key: genre, vocabulary: [a, b]}
      - kind: shared_embedding        # one table for several columns
        dimension: 8                  # + combiner, max_norm, trainable,
        name: items                   #   initializer, checkpoint as embedding
        categoricals:                 # (name: default '<k1>_<k2>_shared_embedding')
          - {kind: identity, key: watched, num_buckets: 1000}
          - {kind: identity, key: shown, num_buckets: 1000}
    context:                          # optional: context feature name -> spec
      id: {dtype: string}             # kind fixed_len (default), shape []
      label: {dtype: int64, default_value: 0}
      tags: {kind: var_len, dtype: string}

Categorical kinds (inside `categorical:`): identity {key, num_buckets,
default_value}, hash_bucket {key, hash_bucket_size, dtype}, vocabulary_list {key,
vocabulary, dtype, default_value, num_oov_buckets}, vocabulary_file {key, path,
size, num_oov_buckets, default_value, dtype, analyze}, weighted {categorical,
weight_key, dtype}, bucketized {source (a numeric column), boundaries}.
`analyze: true` or `analyze: {top_k: N, frequency_threshold: M}` on a
vocabulary_file whose `path` does not exist asks `--analyze` to compute it
(pipeline/stages/analysis.py: DIR/assets/<base name of path>); an existing file is used
as is. Relative paths (vocabulary files,
checkpoints) are resolved against the spec file's directory. Initializer kinds:
truncated_normal / random_normal {mean, stddev, seed}, random_uniform {minval,
maxval, seed}, zeros, constant {value}; without `stddev` the normal ones use
1/sqrt(dimension) like `embedding_column`, without `seed` a seed derived from the
column name (the same table in every run).

Adding a column kind: `register_kind(Kind(name, role, fields, build))`: `fields`
are `Field(name, check, required, default)` (checkers below take `(value, path,
ctx)` and return the converted value or raise `SpecError`), `build(**values)`
returns a column (or a list of columns); with `takes_context=True` it is called
as `build(**values, ctx=ctx, where=path)` (analyze requests and results).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf
import yaml

import transforms
from pipeline.stages import fileio, paths, remote_vocabulary
from pipeline.stages.analysis import StatsRequest, VocabularyRequest

SPEC_VERSION = 1
DENSE = "dense"  # may appear in `columns`
CATEGORICAL = "categorical"  # may appear in a dense column's `categorical`
EXTENSIONS = (".yaml", ".yml", ".json")

_MISSING = object()


class SpecError(ValueError):
    """An invalid columns spec; the message names the file and the key path."""


@dataclasses.dataclass(frozen=True)
class Context:
    """What checkers may need besides the value."""

    base_dir: str  # directory of the spec file (relative paths)
    analysis: Any = None  # analysis.Analysis: results of the analyze pass, or None
    requests: list = dataclasses.field(default_factory=list)  # filled by builders


Check = Callable[[Any, str, Context], Any]


@dataclasses.dataclass(frozen=True)
class Field:
    """One key of a column kind."""

    name: str
    check: Check
    required: bool = False
    default: Any = None


@dataclasses.dataclass(frozen=True)
class Kind:
    """A column kind: its role, keys and builder (`build(**checked_values)`)."""

    name: str
    role: str  # DENSE or CATEGORICAL
    fields: tuple[Field, ...]
    build: Callable[..., Any]
    takes_context: bool = False  # build(**values, ctx=ctx, where=key path)


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Adds `kind` to the table (its name must be new)."""
    if kind.name in KINDS:
        raise ValueError(f"Column kind {kind.name!r} is already registered.")
    if kind.role not in (DENSE, CATEGORICAL):
        raise ValueError(
            "Invalid value for argument `role`. Expected 'dense' or 'categorical'. "
            f"Received: role={kind.role!r}"
        )
    KINDS[kind.name] = kind
    return kind


# --- checkers ------------------------------------------------------------------------


def fail(path: str, expected: str, value: Any) -> SpecError:
    return SpecError(f"{path}: expected {expected}, got {value!r}")


def integer(min_value: int | None = None) -> Check:
    def check(value, path, ctx):
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(path, _int_text(min_value), value)
        if min_value is not None and value < min_value:
            raise fail(path, _int_text(min_value), value)
        return value

    return check


def _int_text(min_value):
    return "an int" if min_value is None else f"an int >= {min_value}"


def number(positive: bool = False) -> Check:
    def check(value, path, ctx):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(path, "a positive number" if positive else "a number", value)
        if positive and not value > 0:
            raise fail(path, "a positive number", value)
        return float(value)

    return check


def string(value, path, ctx):
    if not isinstance(value, str) or not value:
        raise fail(path, "a non-empty string", value)
    return value


def boolean(value, path, ctx):
    if not isinstance(value, bool):
        raise fail(path, "true or false", value)
    return value


def choice(*options: str) -> Check:
    def check(value, path, ctx):
        if value not in options:
            raise fail(path, "one of " + ", ".join(repr(o) for o in options), value)
        return value

    return check


def optional(inner: Check) -> Check:
    def check(value, path, ctx):
        return None if value is None else inner(value, path, ctx)

    return check


def shape(value, path, ctx):
    dims = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(dims, list):
        raise fail(path, "an int or a list of ints >= 1", value)
    for i, d in enumerate(dims):
        integer(1)(d, f"{path}[{i}]", ctx)
    return tuple(dims)


def dtype(*allowed: str) -> Check:
    def check(value, path, ctx):
        if value not in allowed:
            raise fail(path, "a dtype among " + ", ".join(allowed), value)
        return tf.as_dtype(value)

    return check


NUMERIC_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int16", "int8")
KEY_DTYPES = ("string", "int64", "int32")


def vocabulary(value, path, ctx):
    if not isinstance(value, list) or not value:
        raise fail(path, "a non-empty list of strings or ints", value)
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise SpecError(
                f"{path}[{i}]: expected a string or an int, got {item!r} (quote "
                "YAML words such as yes/no/on/off/null)"
            )
    if len({type(v) for v in value}) > 1:
        raise fail(path, "only strings or only ints", value)
    return value


def file_path(value, path, ctx):
    string(value, path, ctx)
    if "://" in value or os.path.isabs(value):
        return value
    if "://" in ctx.base_dir:  # beside a remote spec: keep the `scheme://`
        head, rest = ctx.base_dir.split("://", 1)
        return f"{head}://{posixpath.normpath(posixpath.join(rest, value))}"
    return os.path.normpath(os.path.join(ctx.base_dir, value))


def nested(role: str) -> Check:
    def check(value, path, ctx):
        return build_column(value, path, ctx, role=role)

    return check


def list_of(inner: Check, what: str) -> Check:
    def check(value, path, ctx):
        if not isinstance(value, list) or not value:
            raise fail(path, f"a non-empty list of {what}", value)
        return [inner(item, f"{path}[{i}]", ctx) for i, item in enumerate(value)]

    return check


def boundaries(value, path, ctx):
    if not isinstance(value, list) or not value:
        raise fail(path, "a non-empty list of increasing numbers", value)
    out = [number()(b, f"{path}[{i}]", ctx) for i, b in enumerate(value)]
    if any(b <= a for a, b in zip(out, out[1:], strict=False)):
        raise fail(path, "strictly increasing numbers", value)
    return out


def mapping_of(fields: tuple[Field, ...], what: str) -> Check:
    def check(value, path, ctx):
        return check_fields(value, fields, path, ctx, what)

    return check


def check_fields(value, fields, path, ctx, what: str, skip=("kind",)) -> dict:
    """Checks a mapping against `fields`: unknown keys, required keys, values."""
    if not isinstance(value, Mapping):
        raise fail(path, f"a mapping ({what})", value)
    known = {f.name for f in fields}
    for key in value:
        if key not in known and key not in skip:
            raise SpecError(
                f"{path}: unknown key {key!r} for {what} (expected "
                + ", ".join(sorted(known) or ["none"])
                + ")"
            )
    out = {}
    for f in fields:
        raw = value.get(f.name, _MISSING)
        if raw is _MISSING:
            if f.required:
                raise SpecError(f"{path}.{f.name}: required for {what}")
            out[f.name] = f.default
        else:
            out[f.name] = f.check(raw, f"{path}.{f.name}", ctx)
    return out


# --- initializers --------------------------------------------------------------------

_SEED = Field("seed", optional(integer(0)))
INITIALIZERS: dict[str, tuple[tuple[Field, ...], Callable[..., Any]]] = {
    "truncated_normal": (
        (
            Field("mean", number(), default=0.0),
            Field("stddev", optional(number(True))),
            _SEED,
        ),
        lambda mean, stddev, seed: _keras().initializers.TruncatedNormal(
            mean=mean, stddev=stddev, seed=seed
        ),
    ),
    "random_normal": (
        (
            Field("mean", number(), default=0.0),
            Field("stddev", optional(number(True))),
            _SEED,
        ),
        lambda mean, stddev, seed: _keras().initializers.RandomNormal(
            mean=mean, stddev=stddev, seed=seed
        ),
    ),
    "random_uniform": (
        (
            Field("minval", number(), default=-0.05),
            Field("maxval", number(), default=0.05),
            _SEED,
        ),
        lambda minval, maxval, seed: _keras().initializers.RandomUniform(
            minval=minval, maxval=maxval, seed=seed
        ),
    ),
    "zeros": ((), lambda: _keras().initializers.Zeros()),
    "constant": (
        (Field("value", number(), required=True),),
        lambda value: _keras().initializers.Constant(value),
    ),
}


def _keras():
    import keras

    return keras


def initializer(value, path, ctx):
    """Returns `(kind, checked params)`; built by the embedding builder."""
    if not isinstance(value, Mapping):
        raise fail(path, "a mapping (initializer)", value)
    kind = value.get("kind", "truncated_normal")
    if kind not in INITIALIZERS:
        raise fail(f"{path}.kind", "one of " + ", ".join(INITIALIZERS), kind)
    fields, _ = INITIALIZERS[kind]
    return kind, check_fields(value, fields, path, ctx, f"initializer {kind!r}")


def name_seed(name: str) -> int:
    """A stable 31-bit seed from a column name (the same in every process)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big") >> 1


# --- analyzed values -----------------------------------------------------------------

NORMALIZERS: dict[str, tuple[tuple[Field, ...], Callable[..., Any]]] = {
    "zscore": (
        (Field("mean", number(), required=True), Field("std", number(), required=True)),
        lambda mean, std: transforms.zscore(mean, std),
    ),
    "minmax": (
        (Field("min", number(), required=True), Field("max", number(), required=True)),
        lambda min, max: transforms.minmax(min, max),
    ),
}


def normalizer(value, path, ctx):
    """`zscore` / `minmax` (analyzed): `("analyze", kind)`; a mapping with the
    constants: `("fixed", normalizer)`."""
    if isinstance(value, str):
        if value not in NORMALIZERS:
            raise fail(path, "zscore, minmax or a mapping {kind, ...}", value)
        return "analyze", value
    if not isinstance(value, Mapping):
        raise fail(path, "zscore, minmax or a mapping {kind, ...}", value)
    kind = value.get("kind")
    if kind not in NORMALIZERS:
        raise fail(f"{path}.kind", "one of 'zscore', 'minmax'", kind)
    fields, make = NORMALIZERS[kind]
    params = check_fields(value, fields, path, ctx, f"normalizer {kind!r}")
    try:
        return "fixed", make(**params)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{path}: {e}") from None


_ANALYZE_FIELDS = (
    Field("top_k", optional(integer(1))),
    Field("frequency_threshold", integer(1), default=1),
)


def analyze_vocabulary(value, path, ctx):
    """`true` or `{top_k, frequency_threshold}` -> those values; `false` -> None."""
    if value is True:
        return {"top_k": None, "frequency_threshold": 1}
    if value is False:
        return None
    if isinstance(value, Mapping):
        return check_fields(value, _ANALYZE_FIELDS, path, ctx, "analyze", skip=())
    raise fail(path, "true or a mapping {top_k, frequency_threshold}", value)


def _build_numeric(key, shape, default_value, dtype, normalizer, *, ctx, where):
    normalizer_fn = None
    if normalizer is not None:
        how, what = normalizer
        if how == "fixed":
            normalizer_fn = what
        else:
            if dtype != tf.float32:
                raise ValueError(
                    f"normalizer: {what!r} is computed by --analyze over float32 "
                    f"values; got dtype {dtype.name}"
                )
            ctx.requests.append(StatsRequest(key, what, f"{where}.normalizer"))
            if ctx.analysis is not None:
                normalizer_fn = ctx.analysis.normalizer(key, what)
                if normalizer_fn is None:
                    raise ValueError(
                        f"the analyze results have no statistics of {key!r}"
                    )
    return transforms.sequence_numeric_column(
        key, shape, default_value, dtype, normalizer_fn=normalizer_fn
    )


def _build_vocabulary_file(key, path, size, analyze, *, ctx, where, **kw):
    if analyze is not None and not fileio.exists(path):
        if size is not None:
            raise ValueError(
                "`size` cannot be combined with `analyze` on a vocabulary file to "
                "compute (bound it with analyze.top_k)"
            )
        request = VocabularyRequest(
            key,
            kw["dtype"].name,
            paths.safe_file_name(os.path.basename(path) or path),
            analyze["top_k"],
            analyze["frequency_threshold"],
            where=where,
        )
        ctx.requests.append(request)
        if ctx.analysis is None:
            # Stand-in until the analyze pass ran: validation needs the column's
            # key and dtype, not its file (driver.analyze rebuilds the spec afterwards).
            return transforms.sequence_categorical_column_with_vocabulary_file(
                key, path, vocabulary_size=1, **kw
            )
        path = ctx.analysis.vocabulary_file(request.asset)
        if path is None:
            raise ValueError(
                f"the analyze results have no vocabulary {request.asset!r}"
            )
    fileio.check_supported(path, "vocabulary path")
    return remote_vocabulary.vocabulary_file_column(
        key, path, vocabulary_size=size, **kw
    )


# --- column kinds --------------------------------------------------------------------


def _make_initializer(initializer, dimension: int, seed_name: str):
    if initializer is None:
        return None
    kind, params = initializer
    params = dict(params)
    if "stddev" in params and params["stddev"] is None:
        params["stddev"] = 1.0 / math.sqrt(dimension)
    if "seed" in params and params["seed"] is None:
        params["seed"] = name_seed(seed_name)
    return INITIALIZERS[kind][1](**params)


def _build_embedding(
    categorical, dimension, combiner, max_norm, trainable, initializer, checkpoint
):
    init = _make_initializer(initializer, dimension, f"{categorical.name}_embedding")
    ckpt = checkpoint or {}
    return transforms.embedding_column(
        categorical,
        dimension,
        combiner=combiner,
        initializer=init,
        ckpt_to_load_from=ckpt.get("path"),
        tensor_name_in_ckpt=ckpt.get("tensor"),
        max_norm=max_norm,
        trainable=trainable,
    )


def _build_shared_embedding(
    categoricals,
    dimension,
    combiner,
    max_norm,
    trainable,
    initializer,
    checkpoint,
    name,
):
    table = name or (
        "_".join(sorted(c.name for c in categoricals)) + "_shared_embedding"
    )
    ckpt = checkpoint or {}
    return transforms.sequence_shared_embedding_columns(
        categoricals,
        dimension,
        combiner=combiner,
        initializer=_make_initializer(initializer, dimension, table),
        shared_embedding_collection_name=name,
        ckpt_to_load_from=ckpt.get("path"),
        tensor_name_in_ckpt=ckpt.get("tensor"),
        max_norm=max_norm,
        trainable=trainable,
    )


_KEY = Field("key", string, required=True)
# The table options of `embedding` and `shared_embedding`.
_TABLE_FIELDS = (
    Field("dimension", integer(1), required=True),
    Field("combiner", choice("mean", "sqrtn", "sum"), default="mean"),
    Field("max_norm", optional(number(True))),
    Field("trainable", boolean, default=True),
    Field("initializer", optional(initializer)),
    Field(
        "checkpoint",
        optional(
            mapping_of(
                (
                    Field("path", file_path, required=True),
                    Field("tensor", string, required=True),
                ),
                "checkpoint",
            )
        ),
    ),
)

for _kind in (
    Kind(
        "numeric",
        DENSE,
        (
            _KEY,
            Field("shape", shape, default=(1,)),
            Field("default_value", number(), default=0.0),
            Field("dtype", dtype(*NUMERIC_DTYPES), default=tf.float32),
            Field("normalizer", optional(normalizer)),
        ),
        _build_numeric,
        takes_context=True,
    ),
    Kind(
        "embedding",
        DENSE,
        (Field("categorical", nested(CATEGORICAL), required=True), *_TABLE_FIELDS),
        _build_embedding,
    ),
    Kind(
        "shared_embedding",
        DENSE,
        (
            Field(
                "categoricals",
                list_of(nested(CATEGORICAL), "categorical columns"),
                required=True,
            ),
            *_TABLE_FIELDS,
            Field("name", optional(string)),
        ),
        _build_shared_embedding,
    ),
    Kind(
        "indicator",
        DENSE,
        (Field("categorical", nested(CATEGORICAL), required=True),),
        lambda categorical: transforms.indicator_column(categorical),
    ),
    Kind(
        "identity",
        CATEGORICAL,
        (
            _KEY,
            Field("num_buckets", integer(1), required=True),
            Field("default_value", optional(integer(0))),
        ),
        transforms.sequence_categorical_column_with_identity,
    ),
    Kind(
        "hash_bucket",
        CATEGORICAL,
        (
            _KEY,
            Field("hash_bucket_size", integer(1), required=True),
            Field("dtype", dtype(*KEY_DTYPES), default=tf.string),
        ),
        transforms.sequence_categorical_column_with_hash_bucket,
    ),
    Kind(
        "vocabulary_list",
        CATEGORICAL,
        (
            _KEY,
            Field("vocabulary", vocabulary, required=True),
            Field("dtype", optional(dtype(*KEY_DTYPES))),
            Field("default_value", integer(-1), default=-1),
            Field("num_oov_buckets", integer(0), default=0),
        ),
        lambda key, vocabulary, **kw: (
            transforms.sequence_categorical_column_with_vocabulary_list(
                key, vocabulary, **kw
            )
        ),
    ),
    Kind(
        "vocabulary_file",
        CATEGORICAL,
        (
            _KEY,
            Field("path", file_path, required=True),
            Field("size", optional(integer(1))),
            Field("num_oov_buckets", integer(0), default=0),
            Field("default_value", optional(integer(-1))),
            Field("dtype", dtype(*KEY_DTYPES), default=tf.string),
            Field("analyze", optional(analyze_vocabulary)),
        ),
        _build_vocabulary_file,
        takes_context=True,
    ),
    Kind(
        "weighted",
        CATEGORICAL,
        (
            Field("categorical", nested(CATEGORICAL), required=True),
            Field("weight_key", string, required=True),
            Field("dtype", dtype("float32", "int64"), default=tf.float32),
        ),
        lambda categorical, weight_key, dtype: (
            transforms.sequence_weighted_categorical_column(
                categorical, weight_key, dtype
            )
        ),
    ),
    Kind(
        "bucketized",
        CATEGORICAL,
        (
            Field("source", nested(DENSE), required=True),
            Field("boundaries", boundaries, required=True),
        ),
        lambda source, boundaries: transforms.sequence_bucketized_column(
            source, boundaries
        ),
    ),
):
    register_kind(_kind)


def build_column(value, path: str, ctx: Context, *, role: str = DENSE):
    """Checks one column mapping (`kind` + the kind's keys) and builds it."""
    if not isinstance(value, Mapping):
        raise fail(path, "a mapping with a `kind` key", value)
    kind_name = value.get("kind", _MISSING)
    roles = sorted(k for k, kind in KINDS.items() if kind.role == role)
    if kind_name is _MISSING:
        raise SpecError(f"{path}.kind: required (one of {', '.join(roles)})")
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise SpecError(
            f"{path}.kind: expected one of {', '.join(roles)}, got {kind_name!r}"
            + (
                " (seqshards needs sequence columns: use numeric/embedding/indicator)"
                if role == DENSE
                else ""
            )
        )
    if kind.role != role:
        if kind.role == CATEGORICAL:
            raise SpecError(
                f"{path}.kind: {kind_name!r} is a categorical column, not a dense "
                "sequence column; wrap it: {kind: embedding, dimension: N, "
                "categorical: {...}} or {kind: indicator, categorical: {...}}"
            )
        raise SpecError(
            f"{path}.kind: expected a categorical kind ({', '.join(roles)}), "
            f"got the dense kind {kind_name!r}"
        )
    values = check_fields(value, kind.fields, path, ctx, f"kind {kind_name!r}")
    if kind.takes_context:
        values.update(ctx=ctx, where=path)
    try:
        return kind.build(**values)
    except (ValueError, TypeError) as e:
        raise SpecError(f"{path}: {e}") from None


# --- context -------------------------------------------------------------------------

CONTEXT_FIELDS = (
    Field("kind", choice("fixed_len", "var_len"), default="fixed_len"),
    Field("dtype", dtype("string", "int64", "float32"), required=True),
    Field("shape", shape, default=()),
    Field("default_value", lambda v, p, c: v),
)


def build_context_feature(value, path: str, ctx: Context):
    values = check_fields(value, CONTEXT_FIELDS, path, ctx, "a context feature", ())
    if values["kind"] == "var_len":
        if values["shape"] or values["default_value"] is not None:
            raise SpecError(f"{path}: a var_len feature takes no shape/default_value")
        return tf.io.VarLenFeature(values["dtype"])
    default = values["default_value"]
    if default is not None:
        try:
            tf.constant(default, dtype=values["dtype"], shape=values["shape"])
        except (TypeError, ValueError) as e:
            raise SpecError(
                f"{path}.default_value: expected a value of dtype "
                f"{values['dtype'].name} and shape {list(values['shape'])}, got "
                f"{default!r} ({e})"
            ) from None
    return tf.io.FixedLenFeature(list(values["shape"]), values["dtype"], default)


# --- files ---------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (plain types only) that refuses duplicate mapping keys."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise SpecError(
                f"line {mark.line + 1}, column {mark.column + 1}: duplicate key {key!r}"
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def parse(
    document: Any, *, base_dir: str = ".", analysis: Any = None, requests=None
) -> tuple[list, dict]:
    """Checks a loaded spec document; returns `(columns, context)`.

    Args:
      document: The loaded YAML/JSON.
      base_dir: Directory relative paths are resolved against.
      analysis: Results of the analyze pass (`analysis.Analysis`) the analyzed
        columns are built with; None: they are stand-ins (see `stages.analysis`).
      requests: A list; the analyze requests of the columns are appended.

    Raises:
      SpecError: naming the key path of the first problem.
    """
    ctx = Context(base_dir, analysis, requests if requests is not None else [])
    if not isinstance(document, Mapping):
        raise fail("(top level)", "a mapping with `columns` (and `context`)", document)
    for key in document:
        if key not in ("version", "columns", "context"):
            raise SpecError(
                f"{key}: unknown top-level key (expected version, columns, context)"
            )
    version = document.get("version", SPEC_VERSION)
    if version != SPEC_VERSION:
        raise fail("version", f"{SPEC_VERSION}", version)
    raw_columns = document.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise fail("columns", "a non-empty list of columns", raw_columns)
    columns, names = [], {}
    for i, raw in enumerate(raw_columns):
        path = f"columns[{i}]"
        built = build_column(raw, path, ctx)
        for column in built if isinstance(built, (list, tuple)) else [built]:
            if column.name in names:
                raise SpecError(
                    f"{path}: duplicate column name {column.name!r} (also "
                    f"{names[column.name]})"
                )
            names[column.name] = path
            columns.append(column)
    raw_context = document.get("context") or {}
    if not isinstance(raw_context, Mapping):
        raise fail("context", "a mapping of feature name -> spec", raw_context)
    context = {}
    for name, raw in raw_context.items():
        if not isinstance(name, str) or not name:
            raise fail("context", "non-empty string feature names", name)
        context[name] = build_context_feature(raw, f"context.{name}", ctx)
    return columns, context


def load(path: str, *, analysis: Any = None, requests=None) -> tuple[list, dict, str]:
    """Reads and checks the spec file `path`; returns `(columns, context, sha256)`.

    `analysis` and `requests` as in `parse`.

    Raises:
      SpecError: a YAML/JSON syntax error (with line and column) or an invalid
        spec, the message starting with the file path.
    """
    data = fileio.read_bytes(path)
    try:
        document = yaml.load(data, Loader=_UniqueKeyLoader)  # noqa: S506 (safe)
        columns, context = parse(
            document,
            base_dir=os.path.dirname(path) or ".",
            analysis=analysis,
            requests=requests,
        )
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e)
        what, fix = "syntax error", "Fix the YAML/JSON syntax."
        if isinstance(e, yaml.constructor.ConstructorError):
            what, fix = "unsupported YAML tag", "Use plain YAML values (no tags)."
        raise SpecError(
            f"Invalid columns spec {path}: {what}{where}: {problem}. {fix}"
        ) from None
    except SpecError as e:
        raise SpecError(f"Invalid columns spec {path}: {e}") from None
    return columns, context, hashlib.sha256(data).hexdigest()
