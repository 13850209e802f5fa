"""Decoding serialized SequenceExamples in batches (vectorized), for validation.

Place in the flow: read -> **decode** -> validate -> bucket -> features.
One `tf.io.parse_sequence_example` call per batch (RaggedFeature specs, so every
feature list arrives as flat values + per-step and per-example row splits,
which `validate.check_batch` inspects with numpy). A batch that fails to parse
is bisected to isolate the failing records, whose parser messages are returned.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

import transforms


@dataclasses.dataclass(frozen=True)
class RecordSpec:
    """What a valid record must contain (derived from the columns and CONTEXT).

    Attributes:
      sequence: Feature-list key -> tf.io.VarLenFeature (make_parse_example_spec).
      context: Context feature name -> tf.io.FixedLenFeature / VarLenFeature.
      numeric_widths: Numeric feature-list key -> values per step (prod(shape)).
      id_ranges: Identity-column key -> num_buckets, for columns without a
        default_value (ids outside [0, num_buckets) are invalid).
      id_feature: Scalar string context feature identifying an example (for
        duplicate detection), or None.
      weights: Weight feature-list key -> the id key it weighs (weighted
        columns: one weight per id at every step).
    """

    sequence: Mapping[str, tf.io.VarLenFeature]
    context: Mapping[str, object]
    numeric_widths: Mapping[str, int]
    id_ranges: Mapping[str, int]
    id_feature: str | None = None
    weights: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _base_categorical(column):
    cat = column
    while hasattr(cat, "categorical_column"):
        cat = cat.categorical_column
    return cat


def _is_identity(cat) -> bool:
    return "identity" in type(cat).__name__.lower() or (
        hasattr(cat, "num_buckets")
        and not hasattr(cat, "vocabulary_list")
        and not hasattr(cat, "vocabulary_file")
        and not hasattr(cat, "hash_bucket_size")
    )


def id_feature_of(context: Mapping[str, object], id_feature: str | None) -> str | None:
    """`id_feature` if CONTEXT has it as a scalar string FixedLenFeature, else None."""
    feature = context.get(id_feature) if id_feature else None
    if (
        isinstance(feature, tf.io.FixedLenFeature)
        and tf.as_dtype(feature.dtype) == tf.string
        and list(feature.shape) in ([], [1])
    ):
        return id_feature
    return None


def record_spec(
    columns: Sequence, context: Mapping[str, object], id_feature: str | None = None
) -> RecordSpec:
    """Builds the `RecordSpec` of `columns` (transforms sequence dense columns).

    `id_feature` is kept only if CONTEXT has it as a scalar string feature.
    """
    sequence = dict(transforms.make_parse_example_spec(list(columns)))
    numeric_widths, id_ranges, weights = {}, {}, {}
    for column in columns:
        if not hasattr(column, "categorical_column"):
            for key in column.parse_example_spec:
                numeric_widths[key] = int(math.prod(column.variable_shape))
            continue
        cat = column.categorical_column
        while hasattr(cat, "weight_feature_key"):  # weighted: ids and weights
            weights[cat.weight_feature_key] = cat.key
            cat = cat.categorical_column
        source = getattr(cat, "source_column", None)
        if source is not None:  # bucketized: numeric values per step
            numeric_widths[source.key] = int(math.prod(source.variable_shape))
            continue
        cat = _base_categorical(cat)
        if _is_identity(cat) and getattr(cat, "default_value", None) is None:
            id_ranges[cat.key] = int(cat.num_buckets)
    return RecordSpec(
        sequence,
        dict(context),
        numeric_widths,
        id_ranges,
        id_feature_of(context, id_feature),
        weights,
    )


@dataclasses.dataclass
class DecodedBatch:
    """Result of `Decoder.decode` for N serialized records.

    Attributes:
      ok_rows: int64 [M] indices (into the input) of the records that parsed.
      parse_errors: Input index -> parser message, for the others.
      features: Feature-list key -> (values [V], step_splits [S+1], row_splits
        [M+1]) numpy arrays, rows in `ok_rows` order; string values stay a
        tf.Tensor when the decoder was built with `strings_as_tensors`.
      ids: object [M] example ids (bytes) in `ok_rows` order, or None when the
        spec has no id feature.
      context: CONTEXT name -> (flat values, int64 [M] row lengths), rows in
        `ok_rows` order (FixedLenFeature: prod(shape) values per row).
    """

    ok_rows: np.ndarray
    parse_errors: dict[int, str]
    features: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    ids: np.ndarray | None = None
    context: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(
        default_factory=dict
    )


def length_spec(spec: RecordSpec) -> RecordSpec:
    """The part of `spec` a length histogram needs: one feature list (every
    feature list of a valid record has the same number of steps) and the id
    feature. Parsing it costs about a third of the full spec.

    The list is the narrowest numeric one if any: numbers parse faster than
    strings, and a numeric list has exactly its length in steps (a categorical
    one may end with empty steps)."""
    key = min(
        spec.sequence,
        key=lambda k: (
            k not in spec.numeric_widths,
            spec.numeric_widths.get(k, 0),
            tf.as_dtype(spec.sequence[k].dtype) == tf.string,
            k,
        ),
    )
    context = {}
    if spec.id_feature is not None:
        context = {spec.id_feature: spec.context[spec.id_feature]}
    return RecordSpec({key: spec.sequence[key]}, context, {}, {}, spec.id_feature)


class Decoder:
    """Vectorized SequenceExample decoder; build once per worker (not picklable).

    Args:
      spec: What to parse.
      strings_as_tensors: Keep string feature-list values as a tf.Tensor
        (validation never reads them; the layer takes them back as a tensor):
        a numpy copy makes one Python bytes object per value, and converting
        it back to a tensor reads every one again, both holding the GIL.
    """

    def __init__(self, spec: RecordSpec, strings_as_tensors: bool = False):
        self._spec = spec
        self._string_tensors = strings_as_tensors
        ragged = {
            key: tf.io.RaggedFeature(feature.dtype, row_splits_dtype=tf.int64)
            for key, feature in spec.sequence.items()
        }
        context = dict(spec.context)
        id_feature = spec.id_feature

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def parse(serialized):
            # One op parses context and feature lists: its context checks run
            # even though only the feature lists (and the ids) are returned.
            ctx, seq, _ = tf.io.parse_sequence_example(
                serialized, context_features=context, sequence_features=ragged
            )
            out = {
                key: (rt.values.values, rt.values.row_splits, rt.row_splits)
                for key, rt in seq.items()
            }
            ids = (
                tf.reshape(ctx[id_feature], [-1])
                if id_feature is not None
                else tf.zeros([0], tf.string)
            )
            rows = tf.shape(serialized, out_type=tf.int64)[0]
            out_ctx = {}
            for name, value in ctx.items():
                if isinstance(value, tf.SparseTensor):
                    out_ctx[name] = (value.values, sparse_row_lengths(value, rows))
                else:
                    flat = tf.reshape(value, [-1])
                    per_row = tf.size(flat, out_type=tf.int64) // tf.maximum(rows, 1)
                    out_ctx[name] = (flat, tf.fill([rows], per_row))
            return out, ids, out_ctx

        self._parse = parse
        # TF's parser reports one of a record's problems at random (it parses
        # feature lists in parallel): a failing record is re-parsed one feature
        # at a time, context then feature lists, each in sorted order, and the
        # first failure names it, so dead letters are the same on every run.
        self._probe_specs = [({name: context[name]}, {}) for name in sorted(context)]
        self._probe_specs += [({}, {key: ragged[key]}) for key in sorted(ragged)]
        self._probes: dict[int, object] = {}

    @property
    def parse(self):
        """The batched parse as a `tf.function` (string [N] -> (features, ids,
        context) tensors, as `decode` returns them in numpy), usable in a
        tf.data map; a record it cannot parse fails the whole call."""
        return self._parse

    def decode(self, serialized: Sequence[bytes]) -> DecodedBatch:
        """Decodes a batch; records the parser fails on go to `parse_errors`."""
        n = len(serialized)
        if n == 0:
            out, ids, ctx = self._empty()
            return DecodedBatch(np.zeros(0, np.int64), {}, out, ids, ctx)
        try:
            out, ids, ctx = self._run(serialized)
            return DecodedBatch(np.arange(n, dtype=np.int64), {}, out, ids, ctx)
        except tf.errors.InvalidArgumentError:
            pass
        errors: dict[int, str] = {}
        self._bisect(serialized, 0, n, errors)
        ok = np.asarray([i for i in range(n) if i not in errors], np.int64)
        out, ids, ctx = (
            self._run([serialized[i] for i in ok]) if len(ok) else self._empty()
        )
        return DecodedBatch(ok, errors, out, ids, ctx)

    @functools.cached_property
    def _parse_function(self):
        """`parse`'s one trace, called directly (no per-call binding of the
        argument to the signature in Python)."""
        return self._parse.get_concrete_function()

    def _run(self, serialized):
        out, ids, ctx = self._parse_function(tf.constant(list(serialized), tf.string))
        features = {
            key: (self._values(values), step_splits.numpy(), row_splits.numpy())
            for key, (values, step_splits, row_splits) in out.items()
        }
        context = {name: (v.numpy(), rl.numpy()) for name, (v, rl) in ctx.items()}
        ids = ids.numpy() if self._spec.id_feature is not None else None
        return features, ids, context

    def _values(self, values: tf.Tensor):
        if self._string_tensors and values.dtype == tf.string:
            return values
        return values.numpy()

    def _empty(self):
        out = {
            key: (
                self._values(tf.zeros([0], feature.dtype)),
                np.zeros(1, np.int64),
                np.zeros(1, np.int64),
            )
            for key, feature in self._spec.sequence.items()
        }
        ids = np.zeros(0, object) if self._spec.id_feature is not None else None
        context = {
            name: (
                np.zeros(0, tf.as_dtype(feature.dtype).as_numpy_dtype),
                np.zeros(0, np.int64),
            )
            for name, feature in self._spec.context.items()
        }
        return out, ids, context

    def _bisect(self, serialized, lo, hi, errors):
        try:
            self._parse(tf.constant(list(serialized[lo:hi]), tf.string))
            return
        except tf.errors.InvalidArgumentError as e:
            if hi - lo <= 1:
                errors[lo] = self._explain(serialized[lo], e.message)
                return
        mid = (lo + hi) // 2
        self._bisect(serialized, lo, mid, errors)
        self._bisect(serialized, mid, hi, errors)

    def _explain(self, record: bytes, message: str) -> str:
        """The first failure of `record`, in the fixed order of `_probe_specs`."""
        one = tf.constant([record], tf.string)
        for i, (context, sequence) in enumerate(self._probe_specs):
            if i not in self._probes:
                self._probes[i] = tf.function(
                    lambda x, c=context, s=sequence: tf.io.parse_sequence_example(
                        x, context_features=c, sequence_features=s
                    ),
                    input_signature=[tf.TensorSpec([None], tf.string)],
                )
            try:
                self._probes[i](one)
            except tf.errors.InvalidArgumentError as e:
                return _clean_message(e.message)
        return _clean_message(message)


def _clean_message(message: str) -> str:
    """The parser's own sentence, without TF's graph-execution frame lines."""
    lines = [
        line.strip()
        for line in message.split(" [Op:")[0].splitlines()
        if line.strip() and not line.lstrip().startswith("[[")
    ]
    last = lines[-1] if lines else message
    if "}} " in last:
        last = last.rsplit("}} ", 1)[1]
    return last.strip()


def sparse_row_lengths(value: tf.SparseTensor, rows) -> tf.Tensor:
    """Values per row (int64 [rows]) of a parsed VarLen context SparseTensor."""
    return tf.math.bincount(
        value.indices[:, 0], minlength=rows, maxlength=rows, dtype=tf.int64
    )
