"""Flags of `seqshards` (the job), some shared with `seqshards stats`.

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


def add_shape_flags(parser: argparse.ArgumentParser) -> None:
    """Adds --max_buckets, --static_shapes and --drop_remainder (the job):
    shapes for compiled training (`pipeline.stages.static_shapes`)."""
    parser.add_argument(
        "--max_buckets",
        type=positive_int,
        default=None,
        metavar="K",
        help="At most K buckets for --bucket_boundaries auto (default: no bound).",
    )
    parser.add_argument(
        "--static_shapes",
        action="store_true",
        help="Static shapes for compiled training (XLA, TPUs, torch.compile): each "
        "batch's T is its bucket's upper boundary (at most K values with "
        "--max_buckets K) and every batch holds B examples except at most one "
        "(a bucket's remainder joins the next longer bucket).",
    )
    parser.add_argument(
        "--drop_remainder",
        action="store_true",
        help="With --static_shapes: drop each bucket's remainder (< B examples) "
        "instead, so every batch holds B examples; the dropped examples are "
        "listed in DIR/dropped/remainder.jsonl and counted in metadata.json.",
    )
