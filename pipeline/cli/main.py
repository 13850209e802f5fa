"""CLI: `python -m pipeline` / `seqshards`: argparse -> JobConfig -> driver.run().

Flags seqshards does not define must be Beam pipeline options (e.g. --runner,
--direct_num_workers), and with `--engine tfdata` there may be none: anything
else stops the job before work (`flags.check_leftover_flags`).
Subcommands `seqshards stats ...` (`pipeline.cli.stats`) and `seqshards inspect
DIR` (`pipeline.cli.inspect_output`) are dispatched on the first argument.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pipeline.cli import tf_startup
from pipeline.cli.flags import (
    add_input_flags,
    add_shape_flags,
    boundaries,
    check_leftover_flags,
    positive_int,
)
from pipeline.stages import progress
from pipeline.stages.config import JobConfig

# First argument -> module whose `main(argv)` runs it; anything else is the job.
SUBCOMMANDS = {"stats": "pipeline.cli.stats", "inspect": "pipeline.cli.inspect_output"}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seqshards",
        parents=[progress.verbosity_parser()],
        description=(
            "Materialize SequenceExample TFRecords into length-bucketed, padded "
            "float32 [B, T, D] shards (DIR/shards), with dead letters (DIR/errors), "
            "the embedding tables (DIR/embeddings) and DIR/metadata.json. Any other "
            "flag is passed to Beam's PipelineOptions (e.g. --runner, "
            "--direct_running_mode, --direct_num_workers); the default runner is "
            "Beam's DirectRunner in one process: its bundle-based runner while the "
            "input is at most 1/8 of memory, else its FnApiRunner."
        ),
        epilog="Other commands: `seqshards stats --help` (lengths, feature presence "
        "and bucket choices of an input), `seqshards inspect DIR` (what a run wrote).",
    )
    add_input_flags(parser)
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="Output directory (must be new or empty, see --overwrite).",
    )
    parser.add_argument(
        "--max_sequence_length",
        type=positive_int,
        default=None,
        metavar="N",
        help="Longest sequence accepted, in steps per feature list (default: no "
        "limit). Checked on the serialized record before any tensor is built, so "
        "one huge record cannot blow memory; see --on_long.",
    )
    parser.add_argument(
        "--on_long",
        choices=("dead_letter", "truncate"),
        default="dead_letter",
        help="Records longer than --max_sequence_length: dead_letter (default; "
        "errors/too_long.jsonl) or truncate (keep the first N steps).",
    )
    parser.add_argument(
        "--on_invalid",
        choices=("dead_letter", "fail"),
        default="dead_letter",
        help="Records with NaN/Inf values or identity ids outside [0, num_buckets): "
        "dead_letter (default) or fail (stop the job naming the first offending "
        "record's file and index; no output is left).",
    )
    parser.add_argument(
        "--batch_size",
        type=positive_int,
        default=64,
        help="Examples per output batch B (default: 64).",
    )
    parser.add_argument(
        "--bucket_boundaries",
        type=boundaries,
        default="auto",
        metavar="auto|N,N,...",
        help="'auto' (default: a first pass picks boundaries that "
        "minimize padding for the batch size) or increasing "
        "lengths; bucket i holds lengths <= boundaries[i], the "
        "last bucket the rest.",
    )
    add_shape_flags(parser)
    parser.add_argument(
        "--num_shards",
        type=positive_int,
        default=None,
        help="Number of output shards (default: one per 256 MiB of input).",
    )
    parser.add_argument(
        "--engine",
        choices=("beam", "tfdata"),
        default="beam",
        help="beam (default; any Beam runner) or tfdata (single machine, no Beam).",
    )
    parser.add_argument(
        "--compression",
        choices=("none", "gzip"),
        default="none",
        help="Shard files: none (default) or gzip (TFRecord GZIP, level 1; "
        "load_dataset reads either; about 3x smaller, much slower to write).",
    )
    parser.add_argument(
        "--shuffle_payload",
        choices=("auto", "bytes", "reference"),
        default="auto",
        help="Beam engine: what its grouping steps carry per valid record: its "
        "bytes (the input read once) or a reference (file, offset, size: read "
        "again where its batch is computed; less to shuffle and hold). auto "
        "(default): bytes in one process on the bundle-based runner and for "
        "gs:// and s3:// input, else reference. See README.",
    )
    parser.add_argument(
        "--tfdata_workers",
        type=_workers,
        default=None,
        metavar="N|auto",
        help="--engine tfdata: validate and featurize in N worker processes plus "
        "a writer process (0: all in this process). Default auto: one per core "
        "from 4 cores, at most 8 and 1 GB of available memory each; none on "
        "fewer cores or under 16 MB of input. Same bytes either way.",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace DIR if it is a seqshards output (atomically, on success "
        "only); a directory holding anything else is refused.",
    )
    parser.add_argument(
        "--id_feature",
        default="id",
        help="Context feature written as example_id (default: id).",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="First run the analyze pass the columns spec asks for: vocabularies "
        "of vocabulary_file columns with `analyze:` whose file does not exist, "
        "mean/std or min/max of numeric columns with `normalizer: zscore|minmax`; "
        "written to DIR/assets and used by the job (same engine and runner).",
    )
    parser.add_argument(
        "--no_progress",
        action="store_true",
        help="No progress lines on stderr (also implied by --quiet).",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[JobConfig, list[str]]:
    """Parses argv into (JobConfig, beam_argv)."""
    parser = make_parser()
    args, beam_argv = parser.parse_known_args(argv)
    check_leftover_flags(beam_argv, engine=args.engine, parser=parser)
    config = JobConfig(
        input_pattern=args.input,
        output_dir=args.output,
        columns_file=args.columns or "",
        columns_py=args.columns_py or "",
        max_sequence_length=args.max_sequence_length,
        on_long=args.on_long,
        on_invalid=args.on_invalid,
        batch_size=args.batch_size,
        bucket_boundaries=args.bucket_boundaries,
        num_shards=args.num_shards,
        engine=args.engine,
        overwrite=args.overwrite,
        id_feature=args.id_feature,
        progress=not args.no_progress and args.verbosity >= 0,
        analyze=args.analyze,
        compression=args.compression,
        max_buckets=args.max_buckets,
        static_shapes=args.static_shapes,
        drop_remainder=args.drop_remainder,
        shuffle_payload=args.shuffle_payload,
        tfdata_workers=args.tfdata_workers,
    )
    return config, beam_argv


def _workers(text: str) -> int | None:
    """`--tfdata_workers`: "auto" -> None, else an int >= 0."""
    if text == "auto":
        return None
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(
        f"expected an int >= 0 or 'auto', received {text!r}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    try:
        config, beam_argv = parse_args(argv)
    except ValueError as e:  # JobConfig's checks, unknown flags
        print(f"seqshards: error: {e}", file=sys.stderr)
        return 2
    tf_startup.import_tensorflow(progress.verbosity_of(argv))
    progress.configure_logging(progress.verbosity_of(argv))
    from pipeline import driver
    from pipeline.stages import fileio, metadata

    try:
        result = driver.run(config, beam_argv)
    except (OSError, ValueError) as e:
        # Bad input paths, columns or output, `--on_invalid fail`: the message
        # says what to do; -v shows the traceback.
        if progress.verbosity_of(argv) > 0:
            raise
        print(f"seqshards: error: {e}", file=sys.stderr)
        return 2
    print(metadata.summary(result.metadata, result.seconds, config.output_dir))
    line = fileio.stats_line()  # gs:// / s3:// runs: what the store served
    if line:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
