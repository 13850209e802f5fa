"""`make_parse_example_spec`: columns -> the spec dict for tf.io.parse_*example.

Place in the flow: the pipeline parses SequenceExample records with this spec
(VarLenFeature per key, giving SparseTensors) and feeds them to SequenceFeatures.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import tensorflow as tf

from transforms import _base


def make_parse_example_spec(
    feature_columns: Iterable[_base.FeatureColumn],
) -> dict[str, tf.io.VarLenFeature]:
    """Returns `{key: tf.io.VarLenFeature(dtype)}` in first-appearance order.

    Raises:
      ValueError: a non-column item, or one key with two different specs.
    """
    result: dict[str, tf.io.VarLenFeature] = {}
    for column in feature_columns:
        if not isinstance(column, _base.FeatureColumn):
            raise ValueError(
                f"All feature_columns must be FeatureColumn instances. Given: {column}"
            )
        for key, value in column.parse_example_spec.items():
            if key in result and value != result[key]:
                raise ValueError(
                    f"feature_columns contain different parse_spec for key {key}. "
                    f"Given {value} and {result[key]}"
                )
        result.update(column.parse_example_spec)
    return result


class ColumnSlot(NamedTuple):
    """Where one column sits on the last axis of SequenceFeatures' output."""

    name: str
    offset: int
    width: int


def column_layout(columns: Iterable[_base.SequenceDenseColumn]) -> list[ColumnSlot]:
    """Returns the columns' `[offset, offset + width)` slots on the D axis.

    Sorted by column name, exactly as `SequenceFeatures` concatenates them.
    """
    slots, offset = [], 0
    for column in sorted(columns, key=lambda c: c.name):
        slots.append(ColumnSlot(column.name, offset, column.output_width))
        offset += column.output_width
    return slots
