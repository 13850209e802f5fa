"""metadata.json: build from the run's exact counts, check invariants, write last.

Place in the flow: write -> **metadata** -> publish (the staging dir becomes DIR).

Fields (format `version` 1):
  version, engine, feature_dim, batch_size, bucket_boundaries, id_feature
  columns            [{name, offset, width}] = transforms.column_layout(COLUMNS)
  columns_file       {path, sha256}
  context            {name: {kind: fixed_len|var_len, dtype, shape?}}
  counts             {examples_in, examples_written, errors_total, batches,
                      real_steps, padded_steps,
                      errors: {reason: n}, error_positions: {reason: [[file, i]...]},
                      truncated, truncated_positions: [[file, i]...]}
                     positions: [index into input.files, record index in the
                     file], the first MAX_ERROR_POSITIONS in position order
  padding_efficiency real_steps / (real_steps + padded_steps)
  estimated_padding_efficiency  the plan's bound (each bucket padded to its max)
  shards             [{file, batches, examples}] (paths relative to DIR)
  errors_files       [relative paths], embeddings {column: relative path}
  assets             [relative paths] (only with --analyze: vocabularies, stats.json)
  input              {pattern, files: [{path, records}]}
  static_shapes      only with --static_shapes (`stages.static_shapes`): {max_buckets,
                     drop_remainder, shapes: [{shape: [B, T, D], batches}],
                     short_batches, dropped_files}; counts then has `dropped`
  max_buckets        only with --max_buckets
  files              {relative path: {size, crc32c}}: every file above (shards,
                     errors_files, dropped_files, embeddings, assets), added by
                     write_metadata; readers check DIR against it (publish.verify)
Invariant checked before writing: examples_written + errors_total (+ dropped)
== examples_in.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence

from pipeline.stages import fileio, publish
from pipeline.stages.paths import METADATA_FILE

FORMAT_VERSION = 1
# First offending positions kept per reason.
MAX_ERROR_POSITIONS = 10


class AccountingError(RuntimeError):
    """Raised when examples_written + errors != examples_in (never expected)."""


@dataclasses.dataclass(frozen=True)
class StaticInfo:
    """Driver-side facts metadata.json needs (all JSON-able), handed to the engine."""

    engine: str
    layout: tuple
    columns_file: dict
    context: dict
    id_feature: str | None
    batch_size: int
    input_pattern: str
    files: tuple
    embeddings: dict
    compression: str = "none"
    assets: tuple = ()
    max_buckets: int | None = None

    def metadata_args(self) -> dict:
        """These facts as `metadata.build_metadata` keyword arguments (each
        field is one of its parameters)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass
class Totals:
    """What the batches written add up to (`add` each batch's `BatchStats`)."""

    batches: int = 0
    examples: int = 0
    real_steps: int = 0
    padded_steps: int = 0

    def add(self, stats) -> None:
        """Counts one batch (`features.BatchStats`: examples, real/padded steps)."""
        self.batches += 1
        self.examples += stats.examples
        self.real_steps += stats.real_steps
        self.padded_steps += stats.padded_steps

    def merge(self, other: Totals) -> Totals:
        """The totals of both (Beam combines partial totals)."""
        return Totals(*(a + b for a, b in zip(self.row(), other.row(), strict=True)))

    def row(self) -> tuple[int, int, int, int]:
        return self.batches, self.examples, self.real_steps, self.padded_steps


def assemble(
    info: StaticInfo,
    *,
    boundaries: Sequence[int],
    estimated_efficiency: float,
    records_per_file: Mapping[int, int],
    dead_letters: Iterable[Mapping],
    totals: Totals,
    shards: Sequence[Mapping[str, object]],
    truncated_positions: Sequence[Sequence[int]],
    truncated: int | None = None,
    static: Mapping | None = None,
    dropped: int = 0,
) -> dict:
    """metadata.json's dict from what an engine counted (both engines call it).

    Args:
      info: The driver's facts.
      boundaries: The plan's bucket boundaries.
      estimated_efficiency: The plan's padding-efficiency estimate.
      records_per_file: file index -> records read (dead letters included).
      dead_letters: `output.write_dead_letters` results, one per reason.
      totals: The batches written.
      shards: `output.shard_entry` per shard, in shard order.
      truncated_positions: Positions of truncated records (at least the first
        `MAX_ERROR_POSITIONS`); `truncated` their number (default: all given).
      static: `--static_shapes`' entry (`static_shapes.metadata_entry`), or None.
      dropped: Examples `--drop_remainder` dropped.

    Raises:
      AccountingError: see `build_metadata`.
    """
    dead_letters = list(dead_letters)
    return build_metadata(
        **info.metadata_args(),
        boundaries=boundaries,
        estimated_efficiency=estimated_efficiency,
        records_per_file=records_per_file,
        errors={e["reason"]: e["count"] for e in dead_letters},
        error_positions={e["reason"]: e["positions"] for e in dead_letters},
        examples_written=totals.examples,
        batches=totals.batches,
        real_steps=totals.real_steps,
        padded_steps=totals.padded_steps,
        shards=shards,
        errors_files=[e["file"] for e in dead_letters],
        truncated_positions=truncated_positions,
        truncated=truncated,
        static=static,
        dropped=dropped,
    )


def build_metadata(
    *,
    engine: str,
    layout: Sequence,
    columns_file: Mapping[str, str],
    context: Mapping[str, dict],
    id_feature: str | None,
    batch_size: int,
    boundaries: Sequence[int],
    estimated_efficiency: float,
    input_pattern: str,
    files: Sequence[str],
    records_per_file: Mapping[int, int],
    errors: Mapping[str, int],
    error_positions: Mapping[str, Sequence[Sequence[int]]],
    examples_written: int,
    batches: int,
    real_steps: int,
    padded_steps: int,
    shards: Sequence[Mapping[str, object]],
    errors_files: Sequence[str],
    embeddings: Mapping[str, str],
    truncated_positions: Sequence[Sequence[int]] = (),
    truncated: int | None = None,
    compression: str = "none",
    assets: Sequence[str] = (),
    static: Mapping | None = None,
    dropped: int = 0,
    max_buckets: int | None = None,
) -> dict:
    """Assembles metadata.json's dict and checks the accounting invariant.

    `truncated_positions` are positions of records cut to --max_sequence_length
    (at least the first few), `truncated` their number (default: all given).
    `static` (`static_shapes.metadata_entry`) and `dropped` (examples dropped
    by --drop_remainder) only in static mode.

    Raises:
      AccountingError: if examples_written + errors != examples_in, or the
        shards do not hold exactly the examples and batches computed.
    """
    num_truncated = len(truncated_positions) if truncated is None else truncated
    examples_in = int(sum(records_per_file.values()))
    errors_total = int(sum(errors.values()))
    if examples_written + errors_total + dropped != examples_in:
        raise AccountingError(
            f"Accounting mismatch: examples_written={examples_written} + "
            f"errors={errors_total} + dropped={dropped} != examples_in={examples_in}"
        )
    in_shards = (
        sum(int(s["examples"]) for s in shards),
        sum(int(s["batches"]) for s in shards),
    )
    if in_shards != (examples_written, batches):
        raise AccountingError(
            f"Accounting mismatch: the shards hold {in_shards[0]} examples in "
            f"{in_shards[1]} batches, but {examples_written} examples in {batches} "
            "batches were computed (a runner lost or duplicated output)"
        )
    layout_json = [
        {"name": s.name, "offset": int(s.offset), "width": int(s.width)} for s in layout
    ]
    feature_dim = sum(s["width"] for s in layout_json)
    total = real_steps + padded_steps
    md = {
        "version": FORMAT_VERSION,
        "engine": engine,
        "feature_dim": int(feature_dim),
        "batch_size": int(batch_size),
        "bucket_boundaries": [int(b) for b in boundaries],
        "id_feature": id_feature,
        "columns": layout_json,
        "columns_file": dict(columns_file),
        "context": dict(context),
        "counts": {
            "examples_in": examples_in,
            "examples_written": int(examples_written),
            "errors_total": errors_total,
            "batches": int(batches),
            "real_steps": int(real_steps),
            "padded_steps": int(padded_steps),
            "errors": {str(k): int(v) for k, v in sorted(errors.items()) if v},
            "error_positions": {
                str(k): [[int(f), int(i)] for f, i in sorted(v)[:MAX_ERROR_POSITIONS]]
                for k, v in sorted(error_positions.items())
                if v
            },
            "truncated": int(num_truncated),
            "truncated_positions": [
                [int(f), int(i)]
                for f, i in sorted(truncated_positions)[:MAX_ERROR_POSITIONS]
            ],
        },
        "padding_efficiency": round(real_steps / total, 6) if total else 1.0,
        "estimated_padding_efficiency": round(float(estimated_efficiency), 6),
        "shards": [dict(s) for s in shards],
        "errors_files": sorted(errors_files),
        "embeddings": dict(sorted(embeddings.items())),
        "input": {
            "pattern": input_pattern,
            "files": [
                {"path": path, "records": int(records_per_file.get(i, 0))}
                for i, path in enumerate(files)
            ],
        },
    }
    if compression != "none":  # absent: uncompressed shards (older outputs too)
        md["compression"] = compression
    if assets:  # absent: no analyze pass
        md["assets"] = sorted(assets)
    if static is not None:  # absent: dynamic shapes (T = each batch's longest)
        md["static_shapes"] = dict(static)
        md["counts"]["dropped"] = int(dropped)
    if max_buckets is not None:
        md["max_buckets"] = int(max_buckets)
    return md


def load_metadata(directory: str, *, checksums: bool = False) -> dict:
    """Loads DIR/metadata.json, once DIR checks out against it.

    Args:
      directory: A seqshards output directory DIR.
      checksums: Also compare every listed file's CRC32C (reads them all,
        except on GCS); by default their presence and sizes are compared (one
        listing).

    Raises:
      FileNotFoundError: if DIR has no metadata.json (not a complete run).
      ValueError: if its format version is not supported by this reader.
      publish.IncompleteOutputError: a file metadata.json lists is missing or
        differs (an interrupted run, or files changed since).
    """
    fileio.check_supported(directory, "directory")
    path = f"{directory.rstrip('/')}/metadata.json"
    if not fileio.isfile(path):
        raise FileNotFoundError(
            f"Invalid value for argument `directory`. Expected a seqshards output "
            f"directory with metadata.json (written last: without it the run is "
            f"not complete). Received: directory={directory!r}"
        )
    metadata = json.loads(fileio.read_bytes(path))
    version = metadata.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"Unsupported seqshards metadata version in {path}. Expected "
            f"version={FORMAT_VERSION}. Received: version={version!r}. Upgrade "
            "seqshards or re-run the job with this version."
        )
    publish.verify(directory, metadata, checksums=checksums)
    return metadata


def dumps(metadata: Mapping) -> str:
    return json.dumps(metadata, indent=2, sort_keys=True) + "\n"


def write_metadata(directory: str, metadata: Mapping) -> dict:
    """Writes DIR/metadata.json with `files`, the size and CRC32C of every file
    it names (call last: it is the commit record, see publish.py); returns it."""
    metadata = publish.with_manifest(directory, metadata)
    fileio.write_bytes(f"{directory}/{METADATA_FILE}", dumps(metadata).encode())
    return metadata


def summary(
    metadata: Mapping, seconds: float | None = None, output: str | None = None
) -> str:
    """The final summary table of a run (printed by the CLI).

    Args:
      metadata: The run's metadata.json dict.
      seconds: Wall time of the run, if known.
      output: The output directory, if it should be shown.
    """
    c = metadata["counts"]
    total_steps = c["real_steps"] + c["padded_steps"]
    buckets = len(metadata["bucket_boundaries"]) + 1
    files = metadata.get("input", {}).get("files", [])
    rows = [
        ("examples in", f"{c['examples_in']:,}", f"{len(files)} input file(s)"),
        (
            "examples written",
            f"{c['examples_written']:,}",
            f"{c['batches']:,} batches, {len(metadata['shards'])} shard(s)",
        ),
        ("dead letters", f"{c['errors_total']:,}", "errors/<reason>.jsonl"),
    ]
    rows += [(f"  {reason}", f"{n:,}", "") for reason, n in c["errors"].items()]
    rows += [
        (
            "padding efficiency",
            f"{metadata['padding_efficiency']:.4f}",
            f"{c['real_steps']:,} real / {total_steps:,} padded steps",
        ),
        (
            "buckets",
            f"{buckets}",
            f"B={metadata['batch_size']}, D={metadata['feature_dim']}",
        ),
    ]
    static = metadata.get("static_shapes")
    if static is not None:  # --static_shapes
        rows.append(
            (
                "static shapes",
                f"{len(static['shapes'])}",
                f"{static['short_batches']} short batch(es), "
                f"{c.get('dropped', 0):,} dropped",
            )
        )
    if seconds is not None:
        rate = c["examples_in"] / seconds if seconds > 0 else 0.0
        rows.append(("time", f"{seconds:.1f} s", f"{rate:,.0f} examples/s"))
    width = max(len(value) for _, value, _ in rows)
    label_width = max(20, *(len(label) + 2 for label, _, _ in rows))
    lines = [f"seqshards summary (engine={metadata['engine']})"]
    for label, value, note in rows:
        lines.append(f"  {label:<{label_width}}{value:>{width}}  {note}".rstrip())
    if output is not None:
        lines.append(f"  {'output':<{label_width}}{output}")
    return "\n".join(lines)
