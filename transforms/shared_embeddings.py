"""`sequence_shared_embedding_columns`: several sequence columns, one table.

Place in the flow: each returned column is an `EmbeddingColumn` (dense.py: the
same lookup and combiner math, weighted columns included) whose table is
named by the collection: `SequenceFeatures` creates ONE variable per
collection name and every column of it reads (and trains) that variable.

Semantics are TF 2.x's `tf.feature_column.shared_embeddings` for sequence
columns: the same checks and messages (same column type after unwrapping
weighted columns, same num_buckets), column names `<column>_shared_embedding`,
the table named by `shared_embedding_collection_name`, by default the sorted
column names joined by '_' plus `_shared_embedding`. Unlike TF it works
eagerly. The default table initializer is seeded from the collection name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np

from transforms import _base, dense, serialization


def sequence_shared_embedding_columns(
    categorical_columns: Iterable[_base.SequenceCategoricalColumn],
    dimension: int,
    combiner: str = "mean",
    initializer: Callable | np.ndarray | None = None,
    shared_embedding_collection_name: str | None = None,
    ckpt_to_load_from: str | None = None,
    tensor_name_in_ckpt: str | None = None,
    max_norm: float | None = None,
    trainable: bool = True,
    use_safe_embedding_lookup: bool = True,
) -> list[SharedEmbeddingColumn]:
    """Returns embedding columns, one per categorical column, sharing one table.

    Example:
    ```python
    watched = transforms.sequence_categorical_column_with_identity("watched", 1000)
    shown = transforms.sequence_categorical_column_with_identity("shown", 1000)
    columns = transforms.sequence_shared_embedding_columns([watched, shown], 16)
    layer = transforms.SequenceFeatures(columns)  # one [1000, 16] variable
    ```

    Args:
      categorical_columns: Sequence categorical columns of one type (weighted
        columns count as the type they wrap) and the same num_buckets.
      dimension: Embedding width, > 0.
      combiner: "mean", "sqrtn" or "sum" (per step, as `embedding_column`).
      initializer: Table initializer (callable, or a NumPy array
        `[num_buckets, dimension]`). Default: truncated normal, mean 0,
        stddev 1/sqrt(dimension), seeded from the collection name.
      shared_embedding_collection_name: Name of the table; default
        `'_'.join(sorted column names) + '_shared_embedding'`.
      ckpt_to_load_from: TF checkpoint to warm-start the table from...
      tensor_name_in_ckpt: ...and the name of the tensor in it.
      max_norm: If set, each looked-up row is clipped to this L2 norm.
      trainable: Whether the table is trained.
      use_safe_embedding_lookup: Accepted for compatibility (no effect).

    Returns:
      The columns, in the order of `categorical_columns`.

    Raises:
      ValueError: TF's: bad dimension, half-specified checkpoint, non-callable
        initializer, columns of different types or num_buckets; an unknown
        combiner, an empty or non-categorical `categorical_columns`.
    """
    categorical_columns = list(categorical_columns)
    if (dimension is None) or (dimension < 1):
        raise ValueError(f"Invalid dimension {dimension}.")
    if (ckpt_to_load_from is None) != (tensor_name_in_ckpt is None):
        raise ValueError(
            "Must specify both `ckpt_to_load_from` and `tensor_name_in_ckpt` "
            "or none of them."
        )
    if isinstance(initializer, (np.ndarray, list)):
        initializer = dense.ArrayInitializer(initializer)
    if (initializer is not None) and (not callable(initializer)):
        raise ValueError("initializer must be callable if specified.")
    if not categorical_columns:
        raise ValueError(
            "Invalid value for argument `categorical_columns`. Expected a non-empty "
            "list of sequence categorical columns. Received: []"
        )
    for column in categorical_columns:
        if not isinstance(column, _base.SequenceCategoricalColumn):
            raise ValueError(
                "All categorical_columns must be subclasses of CategoricalColumn. "
                f"Given: {column}, of type: {type(column)}"
            )
    # Sorted so that the default collection name does not depend on the order.
    sorted_columns = sorted(categorical_columns, key=lambda c: c.name)
    c0 = _unwrap(sorted_columns[0])
    num_buckets = sorted_columns[0].num_buckets
    for column in sorted_columns[1:]:
        c = _unwrap(column)
        if not isinstance(c, type(c0)):
            raise ValueError(
                "To use shared_embedding_column, all categorical_columns must have "
                "the same type, or be weighted_categorical_column or sequence column "
                f"of the same type. Given column: {c0.tf_inner_repr()} of type: "
                f"{type(c0)} does not match given column: {c.tf_inner_repr()} of "
                f"type: {type(c)}"
            )
        if num_buckets != c.num_buckets:
            raise ValueError(
                "To use shared_embedding_column, all categorical_columns must have "
                "the same number of buckets. Given column: "
                f"{c0.tf_inner_repr()} with buckets: {num_buckets} does  not match "
                f"column: {c.tf_inner_repr()} with buckets: {c.num_buckets}"
            )
    if not shared_embedding_collection_name:
        shared_embedding_collection_name = "_".join(c.name for c in sorted_columns)
        shared_embedding_collection_name += "_shared_embedding"
    result = []
    for column in categorical_columns:
        # embedding_column's checks (combiner, dimension type, ...) apply too.
        base = dense.embedding_column(
            column,
            dimension,
            combiner=combiner,
            initializer=initializer,
            ckpt_to_load_from=ckpt_to_load_from,
            tensor_name_in_ckpt=tensor_name_in_ckpt,
            max_norm=max_norm,
            trainable=trainable,
            use_safe_embedding_lookup=use_safe_embedding_lookup,
        )
        result.append(
            SharedEmbeddingColumn(
                **{f.name: getattr(base, f.name) for f in dataclasses.fields(base)},
                shared_embedding_collection_name=shared_embedding_collection_name,
            )
        )
    return result


def _unwrap(column):
    while hasattr(column, "weight_feature_key"):
        column = column.categorical_column
    return column


@serialization.register_column
@dataclasses.dataclass(frozen=True, eq=False)
class SharedEmbeddingColumn(dense.EmbeddingColumn):
    """See `sequence_shared_embedding_columns`: an embedding column whose table
    is the collection's (`table_name`), shared with the collection's columns."""

    shared_embedding_collection_name: str = ""

    @property
    def name(self) -> str:
        return f"{self.categorical_column.name}_shared_embedding"

    @property
    def table_name(self) -> str:
        return self.shared_embedding_collection_name

    def __repr__(self) -> str:
        return (
            f"SharedEmbeddingColumn(categorical_column={self.categorical_column!r}, "
            "shared_embedding_column_creator=SharedEmbeddingColumnCreator("
            f"name={self.shared_embedding_collection_name!r}, "
            f"dimension={self.dimension!r}), combiner={self.combiner!r}, "
            f"max_norm={self.max_norm!r}, "
            f"use_safe_embedding_lookup={self.use_safe_embedding_lookup!r})"
        )
