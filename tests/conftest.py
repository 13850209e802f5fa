"""Fixtures shared by tests/transforms and tests/parity."""

import pytest
import tensorflow as tf


def _seed_example(ratings, watches) -> bytes:
    feature = {
        "rating": tf.train.Feature(float_list=tf.train.FloatList(value=ratings)),
        "watches": tf.train.Feature(int64_list=tf.train.Int64List(value=watches)),
    }
    return tf.train.Example(
        features=tf.train.Features(feature=feature)
    ).SerializeToString()


@pytest.fixture
def seed_serialized() -> list[bytes]:
    """The issue's seed example: two flat `tf.train.Example`s with `rating`
    floats and `watches` ids, for `tf.io.parse_example`."""
    return [
        _seed_example([1.0, 1.1], [2, 85]),
        _seed_example([2.0, 2.1, 2.2, 2.3, 2.5], [33, 78, 2, 73, 1]),
    ]
