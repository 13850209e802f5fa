"""Columns of the sample data (data/sample-*.tfrecord), for `make run`.

Per step: `rating` (1 float), `watches` (movie id in [0, 1000)) -> 10-dim
embedding, `genre` (one of 8 words) -> indicator. D = 1 + 10 + 8 = 19.
Context: `id` (bytes) and `label` (int64, 1 when the history's mean rating > 3.0:
learnable from the sequence).
"""

import tensorflow as tf

import transforms

GENRES = [
    "action",
    "comedy",
    "drama",
    "horror",
    "romance",
    "scifi",
    "thriller",
    "western",
]

COLUMNS = [
    transforms.sequence_numeric_column("rating"),
    transforms.embedding_column(
        transforms.sequence_categorical_column_with_identity(
            "watches", num_buckets=1000
        ),
        dimension=10,
    ),
    transforms.indicator_column(
        transforms.sequence_categorical_column_with_vocabulary_list("genre", GENRES)
    ),
]

CONTEXT = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}
