"""Features: a batch of serialized SequenceExamples -> one batch record.

Place in the flow: bucket -> **features** -> batch_format -> output. `FeatureComputer` builds the
`transforms.SequenceFeatures` layer and ONE `tf.function` (input signature
`string [None]`, so no retracing per batch size or T) that parses the batch with
`tf.io.parse_sequence_example` (specs from `make_parse_example_spec`), applies the
layer, trims T to the longest example and zeroes every step t >= length (the
reference pads numeric columns with their default_value; seqshards pads with 0).
Shared by both engines; the Beam DoFn (`pipeline.beam.features`) builds it
in `setup()`. The tfdata engine
instead computes a whole decoded chunk's steps unpadded, [steps, D], with the
layer's `step_rows` (`flat_rows`), and adds the padding as it writes
(`record_pieces`).
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

import transforms
from pipeline.stages import batch_format, decode, fileio, paths
from pipeline.stages.decode import id_feature_of


@dataclasses.dataclass(frozen=True)
class BatchStats:
    """Counts of one output batch."""

    examples: int
    real_steps: int
    padded_steps: int  # B * T - real_steps


@dataclasses.dataclass(frozen=True)
class RecordMaker:
    """What a batch record needs of the columns, picklable and without the
    layer: the tfdata engine's writer process builds records with it.

    Attributes:
      depth: D.
      fixed: The CONTEXT features of fixed length (no row lengths written).
      id_feature: The example id's CONTEXT feature, or None.
    """

    depth: int
    fixed: frozenset
    id_feature: str | None

    def record_pieces(
        self,
        runs: Sequence[tuple[np.ndarray, np.ndarray]],
        lengths: np.ndarray,
        context: Mapping[str, tuple[np.ndarray, np.ndarray]],
        example_id: np.ndarray | None,
        length: int | None = None,
    ) -> tuple[list, BatchStats]:
        """One batch record, as pieces (`batch_format.record_pieces`), from the
        examples' steps (`flat_rows`), written as they are (no [B, T, D]
        array: `batch_format.padded_blocks` adds the padding).

        Args:
          runs: [(rows [n, D], their examples' lengths [k])]: the steps of the
            batch's examples in order, example after example.
          lengths: int64 [B].
          context: CONTEXT name -> (flat values, row lengths [B]) of the batch.
          example_id: [B] ids, or None.
          length: T (`--static_shapes`); None: the longest example.
        """
        lengths = np.asarray(lengths, np.int64)
        b = len(lengths)
        t = int(lengths.max()) if b else 0
        t = t if length is None else int(length)
        ctx = {
            name: (values, None if name in self.fixed else row_lengths)
            for name, (values, row_lengths) in context.items()
        }
        ids = None
        if self.id_feature is not None and example_id is not None:
            ids = list(map(bytes, example_id.tolist()))
        blocks = batch_format.padded_blocks(runs, t, self.depth)
        pieces = batch_format.record_pieces(
            (b, t, self.depth), lengths, ctx, ids, blocks
        )
        real = int(lengths.sum())
        return pieces, BatchStats(b, real, b * t - real)


def build_embedding_weights(columns: Sequence) -> dict[str, np.ndarray]:
    """Builds the layer once (seeded tables) and returns its embedding tables."""
    layer = transforms.SequenceFeatures(list(columns))
    layer.build()
    return {k: np.asarray(v) for k, v in layer.get_embedding_weights().items()}


def save_embedding_weights(directory: str, weights: Mapping[str, np.ndarray]) -> dict:
    """Saves DIR/embeddings/<column>.npy; returns {column: relative path}.

    The file name is `paths.safe_file_name(column)`: a column named after a key
    like `user/watches` is one file (`user%2Fwatches_embedding.npy`) inside
    DIR/embeddings, and metadata.json's `embeddings` records which.
    """
    files = {}
    for name, table in sorted(weights.items()):
        rel = f"{paths.EMBEDDINGS_DIR}/{paths.safe_file_name(name)}.npy"
        with fileio.open_write(f"{directory}/{rel}") as f:
            np.save(f, np.asarray(table, np.float32))
        files[name] = rel
    return files


def load_embedding_weights(paths: Mapping[str, str]) -> dict[str, np.ndarray]:
    """{column: .npy path} (`save_embedding_weights` files) -> {column: table}."""
    weights = {}
    for name, path in paths.items():
        with fileio.open_read(path) as f:
            weights[name] = np.load(io.BytesIO(f.read()))
    return weights


def ragged_index(starts: np.ndarray, lengths: np.ndarray, rows: np.ndarray):
    """Indices of the values of rows `rows` of a ragged array whose rows start
    at `starts` and hold `lengths` values."""
    taken = lengths[rows]
    first = np.cumsum(taken) - taken
    return np.repeat(starts[rows] - first, taken) + np.arange(
        int(taken.sum()), dtype=np.int64
    )


def _take_rows(values, step_splits: np.ndarray, row_splits: np.ndarray, rows):
    """(values, step_splits, row_splits) of the rows `rows` of a decoded feature
    list (values: a numpy array or a tf.Tensor, see `decode.Decoder`)."""
    m = len(row_splits) - 1
    if len(rows) == m and (m == 0 or (rows[0] == 0 and (np.diff(rows) == 1).all())):
        return values, step_splits, row_splits  # every row, in order (the usual)
    steps = np.diff(row_splits)
    step_index = ragged_index(row_splits[:-1], steps, rows)
    counts = np.diff(step_splits)
    value_index = ragged_index(step_splits[:-1], counts, step_index)
    if isinstance(values, tf.Tensor):
        values = tf.gather(values, value_index)
    else:
        values = values[value_index]
    return (
        values,
        np.concatenate([[0], np.cumsum(counts[step_index])]).astype(np.int64),
        np.concatenate([[0], np.cumsum(steps[rows])]).astype(np.int64),
    )


class FeatureComputer:
    """Serialized batch -> (sequence_input [B,T,D], lengths [B], context arrays).

    Not picklable: build it where it runs (DoFn.setup / the tf.data engine).
    """

    def __init__(
        self,
        columns: Sequence,
        context: Mapping[str, object],
        embedding_weights: Mapping[str, np.ndarray] | None = None,
        id_feature: str | None = None,
    ):
        layer = transforms.SequenceFeatures(list(columns))
        layer.build()
        if embedding_weights:
            layer.set_embedding_weights(dict(embedding_weights))
        self._layer = layer
        self._context = dict(context)
        self.id_feature = id_feature_of(context, id_feature)
        sequence_spec = dict(transforms.make_parse_example_spec(list(columns)))
        context_spec = dict(context)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def compute(serialized):
            ctx, seq, _ = tf.io.parse_sequence_example(
                serialized,
                context_features=context_spec,
                sequence_features=sequence_spec,
            )
            x, lengths = layer(seq)
            lengths = tf.cast(lengths, tf.int64)
            t = tf.cast(tf.reduce_max(tf.concat([lengths, [0]], 0)), tf.int32)
            x = x[:, :t, :]
            mask = tf.sequence_mask(lengths, t)[..., tf.newaxis]
            x = tf.where(mask, x, tf.zeros([], x.dtype))
            out_ctx = {}
            for name, value in ctx.items():
                if isinstance(value, tf.SparseTensor):
                    rows = tf.shape(serialized, out_type=tf.int64)[0]
                    row_lengths = decode.sparse_row_lengths(value, rows)
                    out_ctx[name] = (value.values, row_lengths)
                else:
                    out_ctx[name] = (tf.reshape(value, [-1]),)
            return x, lengths, out_ctx

        self._compute = compute
        self.traces = {"rows": 0}  # tf.function traces (1)
        self._fixed = {
            name
            for name, f in self._context.items()
            if isinstance(f, tf.io.FixedLenFeature)
        }
        self._keys = sorted(sequence_spec)
        rows_signature = {
            key: (
                tf.TensorSpec([None], sequence_spec[key].dtype),
                tf.TensorSpec([None], tf.int64),
                tf.TensorSpec([None], tf.int64),
            )
            for key in self._keys
        }

        @tf.function(input_signature=[rows_signature])
        def compute_rows(feats):
            # The layer's present steps, unpadded (`step_rows`): each step's
            # row once, whatever the chunk's longest sequence.
            self.traces["rows"] += 1
            inputs = {
                key: tf.RaggedTensor.from_nested_row_splits(
                    values, [row_splits, step_splits], validate=False
                )
                for key, (values, step_splits, row_splits) in feats.items()
            }
            return layer.step_rows(inputs)[0]

        self._compute_rows = compute_rows

    def trace(self) -> None:
        """Traces `flat_rows`' tf.function now (fixed input signature: the one
        trace it takes), e.g. while another stage is busy."""
        self._rows_function  # noqa: B018 (traced on first access)

    @functools.cached_property
    def _rows_function(self):
        """`compute_rows`' one trace, called directly: the `tf.function` call
        binds and casts its 3 arrays a feature list to the signature in
        Python on every call (~0.5 ms a chunk of the GIL)."""
        return self._compute_rows.get_concrete_function()

    @property
    def depth(self) -> int:
        """D: the features of one step."""
        return self._layer.output_width

    def flat_rows(self, decoded, rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Features of decoded records, unpadded: float32 [sum(lengths), D],
        from one `SequenceFeatures.step_rows` call.

        Args:
          decoded: A `decode.DecodedBatch`.
          rows: int64 [N] rows of `decoded` to compute.
          lengths: int64 [N] their validated lengths (first steps kept).
        """
        rows = np.asarray(rows, np.int64)
        feats = {
            key: tuple(
                map(tf.convert_to_tensor, _take_rows(*decoded.features[key], rows))
            )
            for key in self._keys
        }
        out = self._rows_function(feats).numpy()
        if len(out) != int(np.sum(lengths)):
            raise RuntimeError(
                f"SequenceFeatures gave {len(out)} steps for validated lengths "
                f"summing to {int(np.sum(lengths))} (a bug, not a data fault)"
            )
        return out

    @functools.cached_property
    def _record_maker(self) -> RecordMaker:
        return RecordMaker(self.depth, frozenset(self._fixed), self.id_feature)

    def record_maker(self) -> RecordMaker:
        """The `RecordMaker` of these columns (picklable, no layer)."""
        return self._record_maker

    def record_pieces(self, *args, **kwargs) -> tuple[list, BatchStats]:
        """`RecordMaker.record_pieces` (same arguments) of these columns (one
        maker, built at the first call, not one per batch)."""
        return self._record_maker.record_pieces(*args, **kwargs)

    def __call__(self, serialized: Sequence[bytes]):
        """Returns (x float32 [B,T,D], lengths int64 [B], {name: (values, rl|None)})."""
        x, lengths, ctx = self._compute(tf.constant(list(serialized), tf.string))
        context = {
            name: (parts[0].numpy(), parts[1].numpy() if len(parts) > 1 else None)
            for name, parts in ctx.items()
        }
        return x.numpy(), lengths.numpy(), context

    def batch_record(
        self,
        members: Sequence[tuple[tuple[int, int], int, bytes]],
        length: int | None = None,
    ) -> tuple[bytes, BatchStats]:
        """Materializes sorted `(position, length, bytes)` members as one record,
        padded to T = `length` (`--static_shapes`) or to the longest example.

        Raises:
          RuntimeError: if the layer's lengths disagree with the validated ones
            (a bug, never a data fault: validation guarantees agreement).
        """
        x, lengths, context = self([data for _, _, data in members])
        expected = np.asarray([length for _, length, _ in members], np.int64)
        if not np.array_equal(lengths, expected):
            raise RuntimeError(
                f"SequenceFeatures lengths {lengths.tolist()} differ from the "
                f"validated lengths {expected.tolist()}"
            )
        example_id = None
        if self.id_feature is not None:
            example_id = [bytes(v) for v in context[self.id_feature][0].tolist()]
        if length is not None and length > x.shape[1]:
            x = np.pad(x, ((0, 0), (0, int(length) - x.shape[1]), (0, 0)))
        record = batch_format.encode_batch(x, lengths, context, example_id)
        b, t = int(x.shape[0]), int(x.shape[1])
        real = int(lengths.sum())
        return record, BatchStats(b, real, b * t - real)
