"""Serializable normalizers for `sequence_numeric_column(normalizer_fn=...)`.

Place in the flow: built by the user, or by the job from its analyze pass
(pipeline/stages/analysis.py: mean/std or min/max of every present value of a
feature); the numeric column applies them elementwise to the present values
(no SparseTensor is built). They are frozen, hashable, picklable and
registered Keras objects, so columns and layers carrying them round-trip
through `get_config` / `.keras` files in safe mode.

Arithmetic is float64 (values widened, constants exact), the result float32.
A zero scale (std 0, or max == min) divides by 1: the analyzed values then all
map to 0.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import keras
import tensorflow as tf


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # NumPy scalars
        except (TypeError, ValueError):
            raise TypeError(
                f"Invalid value for argument `{name}`. Expected a number. "
                f"Received: {name}={value!r}"
            ) from None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite number. "
            f"Received: {name}={value!r}"
        )
    return value


class _Elementwise:
    """Maps a Tensor, or a SparseTensor's values, through `apply`."""

    elementwise: ClassVar[bool] = True

    def __call__(self, x):
        if isinstance(x, tf.SparseTensor):
            return x.with_values(self.apply(x.values))
        return self.apply(tf.convert_to_tensor(x))

    def _scaled(self, values, shift: float, scale: float):
        v = tf.cast(values, tf.float64) - tf.constant(shift, tf.float64)
        if scale > 0:
            v = v / tf.constant(scale, tf.float64)
        return tf.cast(v, tf.float32)

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="transforms")
@dataclasses.dataclass(frozen=True)
class ZScore(_Elementwise):
    """`(x - mean) / std` (see `zscore`)."""

    mean: float
    std: float

    def apply(self, values):
        return self._scaled(values, self.mean, self.std)


@keras.saving.register_keras_serializable(package="transforms")
@dataclasses.dataclass(frozen=True)
class MinMax(_Elementwise):
    """`(x - min) / (max - min)` (see `minmax`)."""

    min: float
    max: float

    def apply(self, values):
        return self._scaled(values, self.min, self.max - self.min)


def zscore(mean: float, std: float) -> ZScore:
    """Returns a normalizer `(x - mean) / std` (x - mean when std is 0).

    Example:
    ```python
    rating = transforms.sequence_numeric_column(
        "rating", normalizer_fn=transforms.zscore(3.2, 1.1))
    ```

    Raises:
      TypeError: a non-number. ValueError: a non-finite number, std < 0.
    """
    mean, std = _number("mean", mean), _number("std", std)
    if std < 0:
        raise ValueError(
            f"Invalid value for argument `std`. Expected a number >= 0. Received: "
            f"std={std!r}"
        )
    return ZScore(mean, std)


def minmax(min: float, max: float) -> MinMax:  # noqa: A002 (the statistics' names)
    """Returns a normalizer `(x - min) / (max - min)` (x - min when max == min).

    Raises:
      TypeError: a non-number. ValueError: a non-finite number, max < min.
    """
    low, high = _number("min", min), _number("max", max)
    if high < low:
        raise ValueError(
            "Invalid value for argument `max`. Expected a number >= min. Received: "
            f"min={low!r}, max={high!r}"
        )
    return MinMax(low, high)
