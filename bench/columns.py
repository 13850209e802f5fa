"""Columns file of the benchmark job (`--columns bench/columns.py`), D = 39.

Matches the data of bench/gen_data.py (tests/bench/test_gen_data.py checks the
constants) and the stock-TensorFlow columns of bench/reference_pipeline.py:
  price 2 + rating 1 + watches embedding 16 + genre indicator 20 = 39
(SequenceFeatures concatenates in column-name order: genre, price, rating, watches).
"""

import tensorflow as tf

import transforms

VOCAB20 = (
    "action", "adventure", "animation", "children", "comedy", "crime",
    "documentary", "drama", "fantasy", "film-noir", "horror", "imax",
    "musical", "mystery", "romance", "sci-fi", "thriller", "war", "western",
    "unknown",
)  # fmt: skip
NUM_WATCH_IDS = 100_000
EMBEDDING_DIM = 16

COLUMNS = [
    transforms.sequence_numeric_column("rating"),
    transforms.sequence_numeric_column("price", shape=(2,)),
    transforms.embedding_column(
        transforms.sequence_categorical_column_with_identity("watches", NUM_WATCH_IDS),
        EMBEDDING_DIM,
    ),
    transforms.indicator_column(
        transforms.sequence_categorical_column_with_vocabulary_list("genre", VOCAB20)
    ),
]

CONTEXT = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "user_country": tf.io.FixedLenFeature([], tf.string),
}
