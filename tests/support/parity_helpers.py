"""Parity helpers: run the same columns through tf_keras (the oracle) and ours.

A module of its own, not conftest.py: test files import it by a name no other
test directory uses (conftest fixtures wrap it)."""

import os
import warnings

import numpy as np
import tensorflow as tf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message=".*deprecated.*")
tf.get_logger().setLevel("ERROR")

import tf_keras  # noqa: E402  (the oracle; never imported by transforms/)

import transforms  # noqa: E402


class Oracle:
    """Builds a column set with both APIs (same function names) and runs both."""

    tf_fc = tf.feature_column
    ours = transforms

    @staticmethod
    def init(module, table):
        """Embedding initializer holding `table` in either API."""
        if table is None:
            return None
        if module is transforms:
            return np.asarray(table, np.float32)
        return tf.constant_initializer(np.asarray(table, np.float32))

    def layers(self, build):
        ref = tf_keras.experimental.SequenceFeatures(build(self.tf_fc))
        ours = transforms.SequenceFeatures(build(self.ours))
        return ref, ours

    def compare(self, build, features, ours_features=None, exact=True):
        """Runs both; asserts equal outputs, dtypes and lengths; returns ours."""
        ref, ours = self.layers(build)
        ref_out, ref_len = ref(features)
        out, length = ours(ours_features if ours_features is not None else features)
        assert out.dtype == ref_out.dtype
        assert length.dtype == ref_len.dtype == tf.int64
        assert out.shape == ref_out.shape, (out.shape, ref_out.shape)
        if exact:
            np.testing.assert_array_equal(out.numpy(), ref_out.numpy())
        else:
            np.testing.assert_allclose(out.numpy(), ref_out.numpy(), rtol=1e-6)
        np.testing.assert_array_equal(length.numpy(), ref_len.numpy())
        return out.numpy(), length.numpy()


def sp(rows, dtype=None):
    """2-D SparseTensor from ragged lists (parse_example's layout)."""
    return tf.ragged.constant(rows, dtype=dtype).to_sparse()


def sp3(rows, dtype=None):
    """3-D SparseTensor [B, steps, K] from nested ragged lists."""
    return tf.ragged.constant(rows, dtype=dtype, ragged_rank=2).to_sparse()
