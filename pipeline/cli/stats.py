"""`seqshards stats`: an input's lengths, feature presence and bucket choices.

Place in the flow: before a run. Reads the input once (or a `--sample`) with the
job's own stages (tfrecord.read_file -> decode/validate), so lengths and dead letters
are exactly what the job would see; compares bucket choices (one bucket, auto,
powers of two, the stock-TF reference list, `--bucket_boundaries`) by the
padding efficiency of the batches the job would form (`bucket.simulate_batches`:
same bucketing, sub-keys and chunking as the Beam job), and the trade-off of
shapes against padding for K = 4..64 and auto's buckets, static and dynamic
(`stages.tradeoff`); writes `stats.png` (`plots`: length histogram with the
auto boundaries, efficiency per bucket and per choice, the trade-off).

    seqshards stats --input 'data/sample-*.tfrecord' --columns data/columns.yaml
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import sys
from collections.abc import Sequence

import numpy as np

from pipeline.cli import flags, tf_startup
from pipeline.stages import config

# Hand-picked boundaries of the stock-TensorFlow baseline (bench/reference_pipeline.py).
REFERENCE_BOUNDARIES = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
                        160, 192, 256, 320, 384, 512, 768)  # fmt: skip
PERCENTILES = (50, 90, 99)
DEFAULT_PLOT = "stats.png"


@dataclasses.dataclass
class InputStats:
    """What one pass over the input saw.

    Attributes:
      files: The input files read.
      records: Records read (including damaged stretches).
      positions: `(file_index, record_index)` of each valid example.
      lengths: int64 [N] lengths of the valid examples, same order.
      errors: Dead-letter reason -> count (what the job would dead-letter).
      protos: Records that parse as a SequenceExample proto.
      feature_lists: Feature-list key -> protos having it.
      context: Context feature name -> protos having it.
      sampled: Whether only a sample of each file was read.
    """

    files: list[str]
    records: int = 0
    positions: list = dataclasses.field(default_factory=list)
    lengths: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int64)
    )
    errors: dict = dataclasses.field(default_factory=dict)
    protos: int = 0
    feature_lists: dict = dataclasses.field(default_factory=dict)
    context: dict = dataclasses.field(default_factory=dict)
    sampled: bool = False

    @property
    def histogram(self) -> dict[int, int]:
        values, counts = np.unique(self.lengths, return_counts=True)
        return dict(zip(values.tolist(), counts.tolist(), strict=True))


@dataclasses.dataclass(frozen=True)
class Choice:
    """One bucket choice and the batches the job would form with it."""

    name: str
    boundaries: tuple[int, ...]
    buckets: list  # [bucket.BucketBatches], non-empty buckets only

    @property
    def batches(self) -> int:
        return sum(b.batches for b in self.buckets)

    @property
    def real_steps(self) -> int:
        return sum(b.real_steps for b in self.buckets)

    @property
    def padded_steps(self) -> int:
        return sum(b.padded_steps for b in self.buckets)

    @property
    def efficiency(self) -> float:
        from pipeline.stages import bucket

        return bucket.padding_efficiency(self.real_steps, self.padded_steps)


def collect(
    files: Sequence[str],
    spec,
    *,
    id_feature: str | None = "id",
    sample: int | None = None,
    report=None,
):
    """Reads `files` once with the job's reader and validator.

    Args:
      files: Input TFRecord files (sorted, as `tfrecord.match_files` returns them).
      spec: A `config.ColumnsSpec`.
      id_feature: The job's `--id_feature`: later records with an id already
        seen count as `duplicate_id` dead letters, as in the job.
      sample: Read at most this many records: the first ceil(sample / F) records
        of each of the F files. None reads everything.
      report: An optional `progress.Progress`.

    Returns:
      An `InputStats`.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    from pipeline.stages import decode, progress, tfrecord, validate

    record_spec = decode.record_spec(spec.columns, spec.context, id_feature)
    decoder = decode.Decoder(record_spec)
    first_ids = validate.FirstIdWins()
    per_file = None if sample is None else max(1, math.ceil(sample / len(files)))
    out = InputStats(files=list(files), sampled=sample is not None)
    errors: collections.Counter = collections.Counter()
    lists: collections.Counter = collections.Counter()
    context: collections.Counter = collections.Counter()
    lengths = []
    for file_index, path in enumerate(files):
        for records, read_errors in tfrecord.read_file(
            path, file_index, chunk_size=512
        ):
            read_in_chunk = len(records) + len(read_errors)
            if per_file is not None:  # positions count records and damage alike
                records = [r for r in records if r[0][1] < per_file]
                read_errors = [e for e in read_errors if e[0][1] < per_file]
            out.records += len(records) + len(read_errors)
            errors.update(err.reason for _, err in read_errors)
            if records:
                checked = validate.validate_chunk(decoder, record_spec, records)
                errors.update(e.reason.value for e in checked.errors)
                for (position, length, _), ident in zip(
                    checked.valid, checked.ids, strict=True
                ):
                    # Files in order: the first one is kept.
                    first = None
                    if ident is not None:
                        first = first_ids.first(ident, position)
                    if first is not None:
                        errors[validate.Reason.DUPLICATE_ID.value] += 1
                        continue
                    out.positions.append(position)
                    lengths.append(length)
            for _, data in records:
                try:
                    proto = tf.train.SequenceExample.FromString(data)
                except DecodeError:
                    continue
                out.protos += 1
                lists.update(proto.feature_lists.feature_list.keys())
                context.update(proto.context.feature.keys())
            if report is not None:
                n, nbytes = progress.chunk_size(records)
                report.add(n + len(read_errors), nbytes)
            if len(records) + len(read_errors) < read_in_chunk:
                break  # this file's share of the sample is complete
    if report is not None:
        report.done()
    out.lengths = np.asarray(lengths, np.int64)
    out.errors = dict(sorted(errors.items()))
    out.feature_lists, out.context = dict(lists), dict(context)
    return out


def length_summary(lengths: np.ndarray) -> dict[str, float]:
    """count, min, p50/p90/p99, max and mean of the lengths.

    A percentile p is the smallest length L with at least p % of the examples
    <= L (numpy's "inverted_cdf"), so it is always an observed length.
    """
    lengths = np.asarray(lengths, np.int64)
    if not len(lengths):
        return {"count": 0}
    out = {"count": int(len(lengths)), "min": int(lengths.min())}
    for p in PERCENTILES:
        out[f"p{p}"] = int(np.percentile(lengths, p, method="inverted_cdf"))
    out["max"] = int(lengths.max())
    out["mean"] = float(lengths.mean())
    return out


def powers_of_two(max_length: int) -> tuple[int, ...]:
    """4, 8, 16, ... below `max_length`."""
    return tuple(2**k for k in range(2, 63) if 2**k < max_length)


def compare_choices(
    stats: InputStats,
    batch_size: int,
    extra: Sequence[int] | None = None,
) -> list[Choice]:
    """The bucket choices with the batches the job would form for each.

    Choices: "none" (one bucket), "auto" (what `--bucket_boundaries auto` picks),
    "powers of two", "reference" (`REFERENCE_BOUNDARIES`) and, if given, "yours"
    (`extra`).
    """
    from pipeline.stages import bucket

    histogram = stats.histogram
    max_length = int(stats.lengths.max()) if len(stats.lengths) else 1
    candidates = [
        ("none", ()),
        ("auto", "auto"),
        ("powers of two", powers_of_two(max_length)),
        ("reference", REFERENCE_BOUNDARIES),
    ]
    if extra:
        candidates.append(("yours", tuple(extra)))
    choices = []
    for name, boundaries in candidates:
        plan = bucket.make_plan(histogram, boundaries, batch_size)
        simulated = bucket.simulate_batches(stats.positions, stats.lengths, plan)
        choices.append(Choice(name, plan.boundaries, simulated))
    return choices


def _short(boundaries: Sequence[int], limit: int = 8) -> str:
    if not boundaries:
        return "-"
    items = [str(b) for b in boundaries]
    if len(items) > limit:
        items = items[: limit - 2] + ["...", items[-1]]
    return ",".join(items)


def format_report(
    stats: InputStats,
    choices: Sequence[Choice],
    *,
    batch_size: int,
    feature_dim: int,
    used_lists: Sequence[str],
    used_context: Sequence[str],
    pattern: str = "",
    tradeoff: Sequence | None = None,
) -> str:
    """The text `seqshards stats` prints (`tradeoff`: `stages.tradeoff.tradeoff`
    rows, shown after the bucket choices)."""
    valid = len(stats.lengths)
    lines = [
        f"seqshards stats: {stats.records:,} records from {len(stats.files)} file(s)"
        + (f" ({pattern})" if pattern else "")
        + (" [sample]" if stats.sampled else ""),
        f"  valid {valid:,}, dead letters {sum(stats.errors.values()):,}"
        + (
            " (" + ", ".join(f"{k}={v:,}" for k, v in stats.errors.items()) + ")"
            if stats.errors
            else ""
        ),
        "",
        "Lengths (steps per valid example)",
    ]
    s = length_summary(stats.lengths)
    if s["count"]:
        lines.append("  count     min  median     p90     p99     max     mean")
        lines.append(
            f"  {s['count']:<8,}{s['min']:>4}{s['p50']:>8}{s['p90']:>8}{s['p99']:>8}"
            f"{s['max']:>8}{s['mean']:>9.1f}"
        )
    else:
        lines.append("  no valid examples")
    lines += ["", f"Feature presence (share of {stats.protos:,} SequenceExamples)"]
    rows = [
        ("feature list", k, stats.feature_lists.get(k, 0), True) for k in used_lists
    ]
    rows += [("context", k, stats.context.get(k, 0), True) for k in used_context]
    rows += [
        ("feature list", k, n, False)
        for k, n in sorted(stats.feature_lists.items())
        if k not in used_lists
    ]
    rows += [
        ("context", k, n, False)
        for k, n in sorted(stats.context.items())
        if k not in used_context
    ]
    width = max([len(k) for _, k, _, _ in rows] + [8])
    for kind, key, n, used in rows:
        share = n / stats.protos if stats.protos else 0.0
        note = "" if used else "  (not in the columns)"
        lines.append(f"  {kind:<13}{key:<{width}}  {share:6.1%}  {n:>8,}{note}")
    lines += [
        "",
        f"Bucket choices at B={batch_size}, D={feature_dim} (buckets: non-empty ones; "
        "padding efficiency = real steps / sum of B*T over the batches the job "
        "would form)",
        f"  {'choice':<15}{'buckets':>8}{'batches':>9}{'efficiency':>12}"
        f"{'sequence_input':>16}  boundaries",
    ]
    for c in choices:
        mbytes = (c.real_steps + c.padded_steps) * feature_dim * 4 / 1e6
        lines.append(
            f"  {c.name:<15}{len(c.buckets):>8}{c.batches:>9,}"
            f"{c.efficiency:>12.4f}{mbytes:>13.2f} MB  {_short(c.boundaries)}"
        )
    auto = next((c for c in choices if c.name == "auto"), None)
    if auto is not None and auto.buckets:
        lines += [
            "",
            f"auto: --bucket_boundaries {','.join(map(str, auto.boundaries)) or '-'}",
            f"  {'bucket':>6}  {'lengths':<10}{'examples':>9}{'batches':>9}"
            f"{'efficiency':>12}",
        ]
        from pipeline.stages import bucket

        for b in auto.buckets:
            eff = bucket.padding_efficiency(b.real_steps, b.padded_steps)
            lines.append(
                f"  {b.bucket:>6}  {bucket.bucket_range(auto.boundaries, b.bucket):<10}"
                f"{b.examples:>9,}{b.batches:>9,}{eff:>12.4f}"
            )
    if tradeoff:
        from pipeline.stages import tradeoff as shapes_tradeoff

        lines += ["", *shapes_tradeoff.format_tradeoff(tradeoff, batch_size)]
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    from pipeline.stages import progress

    parser = argparse.ArgumentParser(
        prog="seqshards stats",
        parents=[progress.verbosity_parser()],
        description="Length distribution, feature presence and bucket choices "
        "(padding efficiency of each) of SequenceExample TFRecords, before a run. "
        f"Writes {DEFAULT_PLOT} (needs matplotlib).",
    )
    flags.add_input_flags(parser)
    parser.add_argument(
        "--batch_size",
        type=flags.positive_int,
        default=_job_default("batch_size"),
        help="Batch size B to evaluate (default: the job's, %(default)s).",
    )
    parser.add_argument(
        "--sample",
        type=flags.positive_int,
        default=None,
        metavar="N",
        help="Read at most N records (the first N/F of each of the F "
        "files) instead of the whole input.",
    )
    parser.add_argument(
        "--bucket_boundaries",
        default=None,
        metavar="N,N,...",
        help="Also evaluate these boundaries (as 'yours').",
    )
    parser.add_argument(
        "--id_feature",
        default=_job_default("id_feature"),
        help="Context feature identifying an example, as for the "
        "job (duplicates are counted; default: %(default)s).",
    )
    parser.add_argument(
        "--output_plot",
        default=DEFAULT_PLOT,
        metavar="PATH",
        help="Where to write the figure (default: %(default)s).",
    )
    parser.add_argument("--no_plot", action="store_true", help="Write no figure.")
    return parser


def _job_default(name: str):
    return {f.name: f.default for f in dataclasses.fields(config.JobConfig)}[name]


def load_spec(columns: str | None, columns_py: str | None):
    """The columns spec the job would load for `--columns` / `--columns_py`."""
    if columns_py:
        return config.load_columns(columns_py, allow_python=True)
    return config.load_columns(columns)


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    tf_startup.import_tensorflow(args.verbosity or 0)
    extra = None
    if args.bucket_boundaries:
        from pipeline.stages import bucket

        try:
            extra = bucket.parse_boundaries(args.bucket_boundaries)
        except ValueError as e:
            parser.error(str(e))
        if extra == "auto":
            extra = None
    import transforms
    from pipeline.stages import progress, tfrecord

    progress.configure_logging(args.verbosity or 0)
    spec = load_spec(args.columns, args.columns_py)
    files = tfrecord.match_files(args.input)
    tfrecord.check_readable(files)
    report = None
    if (args.verbosity or 0) >= 0:
        report = progress.Progress(
            "stats", total_bytes=sum(map(tfrecord.file_size, files))
        )
    stats = collect(
        files, spec, id_feature=args.id_feature, sample=args.sample, report=report
    )
    choices = compare_choices(stats, args.batch_size, extra)
    from pipeline.stages import tradeoff as shapes_tradeoff

    tradeoff = None
    if len(stats.lengths):
        tradeoff = shapes_tradeoff.tradeoff(
            stats.positions, stats.lengths, args.batch_size
        )
    layout = transforms.column_layout(list(spec.columns))
    from pipeline.stages import decode

    record_spec = decode.record_spec(spec.columns, spec.context, args.id_feature)
    print(
        format_report(
            stats,
            choices,
            batch_size=args.batch_size,
            feature_dim=sum(s.width for s in layout),
            used_lists=list(record_spec.sequence),
            used_context=list(spec.context),
            pattern=args.input,
            tradeoff=tradeoff,
        )
    )
    if not args.no_plot:
        if not len(stats.lengths):
            progress.logger.warning("No valid examples: no figure written.")
        else:
            try:
                from pipeline.cli import plots

                path = plots.stats_figure(
                    stats, choices, args.output_plot, tradeoff=tradeoff
                )
            except ImportError:
                progress.logger.warning(
                    "matplotlib is not installed: no figure (pip install "
                    "'seqshards[plot]')."
                )
            else:
                print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
