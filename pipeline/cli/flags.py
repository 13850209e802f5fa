"""Flags shared by `seqshards` (the job) and `seqshards stats`.

Place in the flow: **cli** -> driver. They map 1:1 onto `JobConfig` fields
(`pipeline.stages.config`).
"""

from __future__ import annotations

import argparse

from pipeline.stages import bucket


def boundaries(text: str) -> tuple[int, ...] | str:
    """argparse type of `--bucket_boundaries`: "auto" or increasing ints."""
    try:
        return bucket.parse_boundaries(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_int(text: str) -> int:
    """argparse type for flags that take an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def add_input_flags(parser: argparse.ArgumentParser) -> None:
    """Adds --input and the --columns / --columns_py pair (the job and `stats`)."""
    parser.add_argument(
        "--input",
        required=True,
        metavar="GLOB",
        help="Glob of the input SequenceExample TFRecord files.",
    )
    columns = parser.add_mutually_exclusive_group(required=True)
    columns.add_argument(
        "--columns",
        metavar="FILE.yaml",
        help="Declarative columns spec (YAML or JSON: columns and context, see "
        "README.md). Read safely: no code runs.",
    )
    columns.add_argument(
        "--columns_py",
        metavar="FILE.py",
        help="Python columns file defining COLUMNS (transforms sequence dense "
        "columns) and optionally CONTEXT (dict name -> tf.io.FixedLenFeature/"
        "VarLenFeature). It is EXECUTED: only for files you trust.",
    )
