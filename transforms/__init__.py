"""transforms: TensorFlow's sequence feature-column API, natively on Keras 3.

Columns describe how each parsed sequence feature becomes per-step numbers;
`SequenceFeatures` turns a batch of parsed features into
`(sequence_input [B, T, D], sequence_length [B])` with TF 2.21's semantics.
"""

from transforms.bucketized import sequence_bucketized_column
from transforms.categorical import (
    sequence_categorical_column_with_hash_bucket,
    sequence_categorical_column_with_identity,
    sequence_categorical_column_with_vocabulary_file,
    sequence_categorical_column_with_vocabulary_list,
)
from transforms.dense import embedding_column, indicator_column
from transforms.interop import from_tf_feature_columns
from transforms.normalizers import minmax, zscore
from transforms.numeric import sequence_numeric_column
from transforms.sequence_features import SequenceFeatures
from transforms.shared_embeddings import sequence_shared_embedding_columns
from transforms.specs import ColumnSlot, column_layout, make_parse_example_spec
from transforms.weighted import sequence_weighted_categorical_column

__all__ = [
    "sequence_numeric_column",
    "sequence_categorical_column_with_identity",
    "sequence_categorical_column_with_hash_bucket",
    "sequence_categorical_column_with_vocabulary_list",
    "sequence_categorical_column_with_vocabulary_file",
    "sequence_weighted_categorical_column",
    "sequence_bucketized_column",
    "embedding_column",
    "indicator_column",
    "sequence_shared_embedding_columns",
    "zscore",
    "minmax",
    "make_parse_example_spec",
    "SequenceFeatures",
    "from_tf_feature_columns",
    "ColumnSlot",
    "column_layout",
]
