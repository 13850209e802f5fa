"""Flags of `seqshards` (the job), some shared with `seqshards stats`.

Place in the flow: **cli** -> driver. They map 1:1 onto `JobConfig` fields
(`pipeline.stages.config`).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence

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
        help="At most K buckets for --bucket_boundaries auto (default 128: each "
        "bucket holds one open batch in memory; a larger K pads a little less).",
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


def check_leftover_flags(
    leftover: Sequence[str], *, engine: str, parser: argparse.ArgumentParser
) -> None:
    """Refuses flags that would silently do nothing (before any work).

    `parse_known_args` leaves every flag seqshards does not define for Beam's
    `PipelineOptions`, which drops what it does not know: a typo such as
    `--batch_sise 32` would run with the default batch size. With the Beam
    engine a leftover must be one of Beam's options; with `--engine tfdata`
    nothing reads them, so any leftover is refused.

    Raises:
      ValueError: naming the first unknown flag and the closest known one.
    """
    if not leftover:
        return
    ours = _option_strings(parser)
    if engine == "tfdata":
        unknown, known = list(leftover), ours
        why = (
            "(with --engine tfdata Beam's pipeline options do nothing: drop it, "
            "or use --engine beam)"
        )
    else:
        unknown, beam_flags = _unknown_to_beam(leftover)
        known = ours + beam_flags
        why = "(neither a seqshards flag nor a Beam pipeline option)"
    if not unknown:
        return
    arg = unknown[0]
    name = arg.split("=", 1)[0]
    if not name.startswith("-"):
        raise ValueError(f"Unexpected argument {arg!r}: seqshards takes only flags.")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise ValueError(f"Unknown flag {name} {why}.{hint}")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings]


def _unknown_to_beam(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(args no Beam option class defines, every Beam option string), parsed
    the way `PipelineOptions.get_all_options` parses them."""
    from apache_beam.options import pipeline_options

    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    classes = {str(c): c for c in pipeline_options.PipelineOptions.__subclasses__()}
    for cls in classes.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(args))
    return unknown, _option_strings(parser)
