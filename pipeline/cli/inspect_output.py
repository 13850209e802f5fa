"""`seqshards inspect DIR`: what a run wrote, read back the way training reads it.

Place in the flow: after a run, beside reader.py. Reads DIR/metadata.json
(checking every file it lists, sizes and CRC32C: an incomplete or changed DIR
is refused) and every batch through `pipeline.reader.load_dataset`, and prints the counts, dead
letters by reason (first positions and the first one's detail), a bucket table
(bucket, lengths, batches, examples, mean T, padding efficiency) recomputed
from the shards and checked against metadata.json, the column layout (name,
offset, width) and the first batch's shapes. `--plot` writes `inspect.png` (`plots`).

    seqshards inspect out [--plot]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence

from pipeline.cli import tf_startup

DEFAULT_PLOT = "inspect.png"
# Positions shown per dead-letter reason.
SHOW_POSITIONS = 3


@dataclasses.dataclass
class BucketRow:
    """One line of the bucket table (recomputed from the shards)."""

    bucket: int
    batches: int = 0
    examples: int = 0
    real_steps: int = 0
    total_steps: int = 0  # sum of B * T
    sum_t: int = 0  # sum of the batches' T

    @property
    def mean_t(self) -> float:
        return self.sum_t / self.batches if self.batches else 0.0

    @property
    def efficiency(self) -> float:
        return self.real_steps / self.total_steps if self.total_steps else 1.0


@dataclasses.dataclass
class Scan:
    """What reading every batch of DIR found."""

    buckets: dict  # bucket id -> BucketRow
    first_batch: dict  # key -> (dtype name, shape list)
    lengths: list  # every example's length (for the plot)

    @property
    def totals(self) -> BucketRow:
        total = BucketRow(-1)
        for row in self.buckets.values():
            total.batches += row.batches
            total.examples += row.examples
            total.real_steps += row.real_steps
            total.total_steps += row.total_steps
            total.sum_t += row.sum_t
        return total


def scan(directory: str, metadata: Mapping) -> Scan:
    """Reads every batch of DIR (via `pipeline.reader`) into a bucket table."""
    import numpy as np

    from pipeline import reader
    from pipeline.stages import bucket

    boundaries = metadata["bucket_boundaries"]
    rows: dict[int, BucketRow] = {}
    first: dict = {}
    lengths: list = []
    for batch in reader.load_dataset(directory):
        x = batch["sequence_input"]
        n = batch["sequence_length"].numpy()
        if not first:
            first = {
                key: (value.dtype.name, _shape(value)) for key, value in batch.items()
            }
        b, t = int(x.shape[0]), int(x.shape[1])
        bid = bucket.assign_bucket(int(n.max()) if len(n) else 0, boundaries)
        row = rows.setdefault(bid, BucketRow(bid))
        row.batches += 1
        row.examples += b
        row.real_steps += int(np.sum(n))
        row.total_steps += b * t
        row.sum_t += t
        lengths.extend(n.tolist())
    return Scan(dict(sorted(rows.items())), first, lengths)


def _shape(value) -> list:
    shape = getattr(value, "shape", None)
    if shape is None:
        return []
    return [None if d is None else int(d) for d in shape]


def _first_errors(directory: str, metadata: Mapping) -> dict[str, dict]:
    """reason -> the first dead letter of errors/<reason>.jsonl (without data)."""
    from pipeline.stages import fileio

    out = {}
    for rel in metadata.get("errors_files", []):
        path = f"{directory.rstrip('/')}/{rel}"
        if not fileio.isfile(path):
            continue
        with fileio.open_read(path) as f:
            line = f.readline().decode()
        if line.strip():
            entry = json.loads(line)
            entry.pop("data_b64", None)
            out[entry["reason"]] = entry
    return out


def format_report(
    directory: str, metadata: Mapping, result: Scan, first_errors: Mapping
) -> str:
    """The text `seqshards inspect` prints."""
    from pipeline.stages import bucket
    from pipeline.stages.bucket import bucket_range

    c = metadata["counts"]
    files = metadata.get("input", {}).get("files", [])
    columns_file = metadata.get("columns_file", {})
    lines = [
        f"seqshards inspect {directory}: format version {metadata['version']}, "
        f"engine {metadata['engine']}, columns {columns_file.get('path', '?')} "
        f"(sha256 {columns_file.get('sha256', '')[:12]})",
        "",
        "Counts",
        f"  examples in         {c['examples_in']:>9,}  from {len(files)} file(s)",
        f"  examples written    {c['examples_written']:>9,}  in {c['batches']:,} "
        f"batches, {len(metadata['shards'])} shard(s)",
        f"  dead letters        {c['errors_total']:>9,}",
        f"  padding efficiency  {metadata['padding_efficiency']:>9.4f}  "
        f"({c['real_steps']:,} real / {c['real_steps'] + c['padded_steps']:,} "
        "padded steps)",
    ]
    for f in files:
        lines.append(f"    {f['path']}: {f['records']:,} records")
    if c["errors"]:
        lines += ["", "Dead letters by reason (first positions as file:record)"]
        for reason, n in c["errors"].items():
            positions = c.get("error_positions", {}).get(reason, [])
            shown = ", ".join(
                f"{_file_name(files, fi)}:{ri}" for fi, ri in positions[:SHOW_POSITIONS]
            )
            more = ", ..." if n > SHOW_POSITIONS else ""
            lines.append(f"  {reason:<24}{n:>7,}  {shown}{more}")
            first = first_errors.get(reason)
            if first:
                lines.append(f"  {'':<31}first: {first['detail']}")
        lines.append(f"  (records with their bytes: {directory}/errors/<reason>.jsonl)")
    boundaries = metadata["bucket_boundaries"]
    lines += [
        "",
        f"Buckets (B={metadata['batch_size']}, {len(boundaries) + 1} buckets, "
        f"boundaries {','.join(map(str, boundaries)) or '-'})",
        f"  {'bucket':>6}  {'lengths':<10}{'batches':>8}{'examples':>10}"
        f"{'mean T':>9}{'efficiency':>12}",
    ]
    for row in result.buckets.values():
        lines.append(
            f"  {row.bucket:>6}  {bucket_range(boundaries, row.bucket):<10}"
            f"{row.batches:>8,}{row.examples:>10,}{row.mean_t:>9.1f}"
            f"{row.efficiency:>12.4f}"
        )
    total = result.totals
    padded = total.total_steps - total.real_steps
    agrees = (
        total.batches == c["batches"]
        and total.examples == c["examples_written"]
        and total.real_steps == c["real_steps"]
        and padded == c["padded_steps"]
    )
    lines.append(
        f"  {'total':>6}  {'':<10}{total.batches:>8,}{total.examples:>10,}"
        f"{total.mean_t:>9.1f}"
        f"{bucket.padding_efficiency(total.real_steps, padded):>12.4f}"
        f"  {'= metadata.json' if agrees else '!= metadata.json counts'}"
    )
    lines += [
        "",
        f"Column layout (D={metadata['feature_dim']}; sequence_input[..., offset : "
        "offset + width])",
        f"  {'name':<28}{'offset':>7}{'width':>7}",
    ]
    for col in metadata["columns"]:
        lines.append(f"  {col['name']:<28}{col['offset']:>7}{col['width']:>7}")
    if metadata.get("context"):
        ctx = ", ".join(
            f"{k} ({v['dtype']}, {v['kind']}"
            + (f" {v['shape']}" if "shape" in v else "")
            + ")"
            for k, v in metadata["context"].items()
        )
        lines.append(f"  context: {ctx}")
    for name, rel in metadata.get("embeddings", {}).items():
        lines.append(f"  embedding table {name}: {rel}")
    lines += ["", "First batch (pipeline.load_dataset)"]
    for key, (dtype, shape) in result.first_batch.items():
        lines.append(f"  {key:<20}{dtype:<9}{shape}")
    if not result.first_batch:
        lines.append("  (no batches)")
    return "\n".join(lines)


def _file_name(files: Sequence[Mapping], index: int) -> str:
    if 0 <= index < len(files):
        return os.path.basename(files[index]["path"])
    return f"file{index}"


def make_parser() -> argparse.ArgumentParser:
    from pipeline.stages import progress

    parser = argparse.ArgumentParser(
        prog="seqshards inspect",
        parents=[progress.verbosity_parser()],
        description="Show what a seqshards run wrote: counts, dead letters by "
        "reason, a bucket table recomputed from the shards, the column layout and "
        "the first batch's shapes.",
    )
    parser.add_argument(
        "directory", metavar="DIR", help="A seqshards output directory."
    )
    parser.add_argument(
        "--plot",
        action="store_true",
        help=f"Write a figure ({DEFAULT_PLOT}, needs matplotlib).",
    )
    parser.add_argument(
        "--output_plot",
        default=None,
        metavar="PATH",
        help=f"Figure path (implies --plot; default {DEFAULT_PLOT}).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    tf_startup.import_tensorflow(args.verbosity or 0)
    from pipeline import reader
    from pipeline.stages import progress

    progress.configure_logging(args.verbosity or 0)
    metadata = reader.load_metadata(args.directory, checksums=True)
    result = scan(args.directory, metadata)
    print(
        format_report(
            args.directory, metadata, result, _first_errors(args.directory, metadata)
        )
    )
    if args.plot or args.output_plot:
        try:
            from pipeline.cli import plots

            path = plots.inspect_figure(
                metadata, result, args.output_plot or DEFAULT_PLOT
            )
        except ImportError:
            progress.logger.warning(
                "matplotlib is not installed: no figure "
                "(pip install 'seqshards[plot]').",
            )
        else:
            print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
