"""Sequence categorical columns: identity, hash bucket, vocabulary list / file.

Place in the flow: each column maps the flat values of a batch ([N], all rows
and steps at once) to int64 ids with one vectorized lookup (a hash table built
once per layer, `tf.strings.to_hash_bucket_fast`, or identity). The dense
columns in dense.py turn those ids into `[B, T, D]`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf

from transforms import _base, serialization


def sequence_categorical_column_with_identity(
    key: str, num_buckets: int, default_value: int | None = None
) -> IdentityCategoricalColumn:
    """Returns a column whose int64 input values are the ids (TF signature).

    Args:
      key: Feature key.
      num_buckets: Ids are in `[0, num_buckets)`.
      default_value: If set, ids outside the range become this id; otherwise
        they pass unchanged (negative ids are then dropped downstream).
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets {num_buckets} < 1, column_name {key}")
    if default_value is not None and (
        default_value < 0 or default_value >= num_buckets
    ):
        raise ValueError(
            f"default_value {default_value} not in range [0, {num_buckets}), "
            f"column_name {key}"
        )
    _base.assert_key_is_string(key)
    return IdentityCategoricalColumn(
        key=key, num_buckets=num_buckets, default_value=default_value
    )


def sequence_categorical_column_with_hash_bucket(
    key: str, hash_bucket_size: int, dtype: tf.DType = tf.string
) -> HashedCategoricalColumn:
    """Returns a column hashing values into `hash_bucket_size` ids (TF signature).

    Id = FarmHash Fingerprint64(value) mod `hash_bucket_size`; integers are
    hashed through their decimal string.
    """
    if hash_bucket_size is None:
        raise ValueError(f"hash_bucket_size must be set. key: {key}")
    if hash_bucket_size < 1:
        raise ValueError(
            "hash_bucket_size must be at least 1. "
            f"hash_bucket_size: {hash_bucket_size}, key: {key}"
        )
    _base.assert_key_is_string(key)
    dtype = tf.as_dtype(dtype)
    _base.assert_string_or_int(dtype, prefix=f"column_name: {key}")
    return HashedCategoricalColumn(key, hash_bucket_size, dtype)


def sequence_categorical_column_with_vocabulary_list(
    key: str,
    vocabulary_list,
    dtype: tf.DType | None = None,
    default_value: int = -1,
    num_oov_buckets: int = 0,
) -> VocabularyListCategoricalColumn:
    """Returns a column mapping values to their position in `vocabulary_list`.

    Misses go to `len(vocabulary_list) + hash mod num_oov_buckets` when
    `num_oov_buckets > 0`, else to `default_value` (-1: dropped).
    """
    if vocabulary_list is None or len(vocabulary_list) < 1:
        raise ValueError(
            f"vocabulary_list {vocabulary_list} must be non-empty, column_name: {key}"
        )
    if len(set(vocabulary_list)) != len(vocabulary_list):
        raise ValueError(
            f"Duplicate keys in vocabulary_list {vocabulary_list}, column_name: {key}"
        )
    vocabulary_dtype = tf.as_dtype(np.array(vocabulary_list).dtype)
    if num_oov_buckets:
        if default_value != -1:
            raise ValueError(
                f"Can't specify both num_oov_buckets and default_value in {key}."
            )
        if num_oov_buckets < 0:
            raise ValueError(f"Invalid num_oov_buckets {num_oov_buckets} in {key}.")
    _base.assert_string_or_int(
        vocabulary_dtype, prefix=f"column_name: {key} vocabulary"
    )
    if dtype is None:
        dtype = vocabulary_dtype
    else:
        dtype = tf.as_dtype(dtype)
        if dtype.is_integer != vocabulary_dtype.is_integer:
            raise ValueError(
                f"dtype {dtype} and vocabulary dtype {vocabulary_dtype} do not "
                f"match, column_name: {key}"
            )
    _base.assert_string_or_int(dtype, prefix=f"column_name: {key}")
    _base.assert_key_is_string(key)
    return VocabularyListCategoricalColumn(
        key=key,
        vocabulary_list=tuple(vocabulary_list),
        dtype=dtype,
        default_value=default_value,
        num_oov_buckets=num_oov_buckets,
    )


def sequence_categorical_column_with_vocabulary_file(
    key: str,
    vocabulary_file: str,
    vocabulary_size: int | None = None,
    num_oov_buckets: int = 0,
    default_value: int | None = None,
    dtype: tf.DType = tf.string,
) -> VocabularyFileCategoricalColumn:
    """Returns a column mapping values to their line number in `vocabulary_file`.

    Line i (0-based, whole line, trailing newline removed) is id i for the
    first `vocabulary_size` lines (default: all lines, counted now). Misses as
    for the vocabulary list (`default_value=None` means -1). A file name
    ending in `tfrecord.gz` is read as GZIP TFRecords, one key per record.
    """
    if not vocabulary_file:
        raise ValueError(f"Missing vocabulary_file in {key}.")
    file_format = "tfrecord_gzip" if vocabulary_file.endswith("tfrecord.gz") else None
    if vocabulary_size is None:
        if not tf.io.gfile.exists(vocabulary_file):
            raise ValueError(f"vocabulary_file in {key} does not exist.")
        if file_format == "tfrecord_gzip":
            vocabulary_size = sum(
                1 for _ in tf.data.TFRecordDataset(vocabulary_file, "GZIP")
            )
        else:
            with tf.io.gfile.GFile(vocabulary_file, mode="rb") as f:
                vocabulary_size = sum(1 for _ in f)
    if vocabulary_size < 1:
        raise ValueError(f"Invalid vocabulary_size in {key}.")
    if num_oov_buckets:
        if default_value is not None:
            raise ValueError(
                f"Can't specify both num_oov_buckets and default_value in {key}."
            )
        if num_oov_buckets < 0:
            raise ValueError(f"Invalid num_oov_buckets {num_oov_buckets} in {key}.")
    dtype = tf.as_dtype(dtype)
    _base.assert_string_or_int(dtype, prefix=f"column_name: {key}")
    _base.assert_key_is_string(key)
    return VocabularyFileCategoricalColumn(
        key=key,
        vocabulary_file=vocabulary_file,
        vocabulary_size=vocabulary_size,
        num_oov_buckets=0 if num_oov_buckets is None else num_oov_buckets,
        dtype=dtype,
        default_value=-1 if default_value is None else default_value,
        file_format=file_format,
    )


def _as_key(values: tf.Tensor) -> tf.Tensor:
    """Lookup keys: strings as is, integers widened to int64."""
    return values if values.dtype == tf.string else tf.cast(values, tf.int64)


def _oov_ids(keys, ids, base: int, num_oov_buckets: int):
    """Replaces misses (-1) by `base + fingerprint64(str(key)) mod num_oov_buckets`."""
    if not num_oov_buckets:
        return ids
    strings = keys if keys.dtype == tf.string else tf.strings.as_string(keys)
    hashed = tf.strings.to_hash_bucket_fast(strings, num_oov_buckets) + base
    return tf.where(ids < 0, hashed, ids)


@serialization.register_column
@dataclasses.dataclass(frozen=True)
class IdentityCategoricalColumn(_base.SequenceCategoricalColumn):
    """See `sequence_categorical_column_with_identity`."""

    TF_INNER_CLASS_NAME = "IdentityCategoricalColumn"

    key: str
    num_buckets: int
    default_value: int | None = None

    @property
    def dtype(self) -> tf.DType:
        return tf.int64

    def inner_config(self) -> dict[str, Any]:
        # TF's field is `number_buckets`.
        return {
            "key": self.key,
            "number_buckets": self.num_buckets,
            "default_value": self.default_value,
        }

    @classmethod
    def from_inner_config(cls, config, custom_objects=None):
        config = dict(config)
        if "number_buckets" in config:  # TF's (ours before: num_buckets)
            config["num_buckets"] = config.pop("number_buckets")
        return cls(**config)

    def __repr__(self) -> str:
        return self._tf_repr(
            f"IdentityCategoricalColumn(key={self.key!r}, "
            f"number_buckets={self.num_buckets!r}, "
            f"default_value={self.default_value!r})"
        )

    def check_input_dtype(self, dtype):
        if not dtype.is_integer:
            raise ValueError(
                f"Invalid input, not integer. key: {self.key} dtype: {dtype}"
            )

    def lookup(self, values, state=None):
        ids = tf.cast(values, tf.int64)
        if self.default_value is not None:
            out_of_range = tf.logical_or(ids < 0, ids >= self.num_buckets)
            ids = tf.where(out_of_range, tf.constant(self.default_value, tf.int64), ids)
        return ids


@serialization.register_column
@dataclasses.dataclass(frozen=True)
class HashedCategoricalColumn(_base.SequenceCategoricalColumn):
    """See `sequence_categorical_column_with_hash_bucket`."""

    TF_INNER_CLASS_NAME = "HashedCategoricalColumn"

    key: str
    hash_bucket_size: int
    dtype: tf.DType = tf.string

    @property
    def num_buckets(self) -> int:
        return self.hash_bucket_size

    def __repr__(self) -> str:
        return self._tf_repr(
            f"HashedCategoricalColumn(key={self.key!r}, "
            f"hash_bucket_size={self.hash_bucket_size!r}, dtype={self.dtype!r})"
        )

    def check_input_dtype(self, dtype):
        _base.assert_string_or_int(
            dtype, prefix=f"column_name: {self.key} input_tensor"
        )
        if self.dtype.is_integer != dtype.is_integer:
            raise ValueError(
                "Column dtype and SparseTensors dtype must be compatible. "
                f"key: {self.key}, column dtype: {self.dtype}, tensor dtype: {dtype}"
            )

    def lookup(self, values, state=None):
        if values.dtype != tf.string:
            values = tf.strings.as_string(values)
        return tf.strings.to_hash_bucket_fast(values, self.hash_bucket_size)


@serialization.register_column
@dataclasses.dataclass(frozen=True)
class VocabularyListCategoricalColumn(_base.SequenceCategoricalColumn):
    """See `sequence_categorical_column_with_vocabulary_list`."""

    TF_INNER_CLASS_NAME = "VocabularyListCategoricalColumn"

    key: str
    vocabulary_list: tuple
    dtype: tf.DType
    default_value: int = -1
    num_oov_buckets: int = 0

    @property
    def num_buckets(self) -> int:
        return len(self.vocabulary_list) + self.num_oov_buckets

    def __repr__(self) -> str:
        return self._tf_repr(
            f"VocabularyListCategoricalColumn(key={self.key!r}, "
            f"vocabulary_list={self.vocabulary_list!r}, dtype={self.dtype!r}, "
            f"default_value={self.default_value!r}, "
            f"num_oov_buckets={self.num_oov_buckets!r})"
        )

    @classmethod
    def from_inner_config(cls, config, custom_objects=None):
        config = dict(config)
        config["vocabulary_list"] = tuple(config["vocabulary_list"])  # JSON: list
        return super().from_inner_config(config, custom_objects)

    def make_lookup(self):
        if self.dtype == tf.string:
            keys = tf.constant(self.vocabulary_list, tf.string)
        else:
            keys = tf.constant(self.vocabulary_list, tf.int64)
        default = -1 if self.num_oov_buckets else self.default_value
        initializer = tf.lookup.KeyValueTensorInitializer(
            keys, tf.range(len(self.vocabulary_list), dtype=tf.int64)
        )
        return tf.lookup.StaticHashTable(
            initializer,
            default_value=default,
            name=f"{_base.sanitize_name(self.key)}_lookup",
        )

    def lookup(self, values, state):
        keys = _as_key(values)
        ids = state.lookup(keys)
        return _oov_ids(keys, ids, len(self.vocabulary_list), self.num_oov_buckets)


@serialization.register_column
@dataclasses.dataclass(frozen=True)
class VocabularyFileCategoricalColumn(_base.SequenceCategoricalColumn):
    """See `sequence_categorical_column_with_vocabulary_file`."""

    TF_INNER_CLASS_NAME = "VocabularyFileCategoricalColumn"

    key: str
    vocabulary_file: str
    vocabulary_size: int
    num_oov_buckets: int = 0
    dtype: tf.DType = tf.string
    default_value: int = -1
    file_format: str | None = None

    @property
    def num_buckets(self) -> int:
        return self.vocabulary_size + self.num_oov_buckets

    def __repr__(self) -> str:
        return self._tf_repr(
            f"VocabularyFileCategoricalColumn(key={self.key!r}, "
            f"vocabulary_file={self.vocabulary_file!r}, "
            f"vocabulary_size={self.vocabulary_size!r}, "
            f"num_oov_buckets={self.num_oov_buckets!r}, dtype={self.dtype!r}, "
            f"default_value={self.default_value!r}, "
            f"file_format={self.file_format!r})"
        )

    def make_lookup(self):
        key_dtype = tf.string if self.dtype == tf.string else tf.int64
        default = -1 if self.num_oov_buckets else self.default_value
        name = f"{_base.sanitize_name(self.key)}_lookup"
        if self.file_format == "tfrecord_gzip":
            records = [
                r.numpy() for r in tf.data.TFRecordDataset(self.vocabulary_file, "GZIP")
            ][: self.vocabulary_size]
            keys = tf.constant(records)
            if key_dtype != tf.string:
                keys = tf.strings.to_number(keys, out_type=key_dtype)
            initializer = tf.lookup.KeyValueTensorInitializer(
                keys, tf.range(len(records), dtype=tf.int64)
            )
        else:
            initializer = tf.lookup.TextFileInitializer(
                os.fspath(self.vocabulary_file),
                key_dtype=key_dtype,
                key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64,
                value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                vocab_size=self.vocabulary_size,
            )
        return tf.lookup.StaticHashTable(initializer, default_value=default, name=name)

    def lookup(self, values, state):
        keys = _as_key(values)
        ids = state.lookup(keys)
        return _oov_ids(keys, ids, self.vocabulary_size, self.num_oov_buckets)
