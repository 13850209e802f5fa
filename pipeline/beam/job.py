"""The Beam job: `MaterializeSequenceFeatures`, `build(p, ...)` and `run(...)`.

Place in the flow: composes read -> validate -> bucket -> features -> write ->
metadata, each step the Beam wrapper of its stage. The driver
(`pipeline.driver`) prepares the run and hands over a staging directory; the
last step writes metadata.json there (it depends on every shard and
dead-letter file through side inputs), and the driver renames it into place.
The runner is chosen by `runner.make_runner`, the shuffle payload by
`JobConfig.shuffle_payload_for`.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from pipeline.beam import (
    bucket,
    engines,
    features,
    progress,
    read,
    runner,
    shards,
    validate,
    write,
)
from pipeline.beam import static_shapes as static_batches
from pipeline.stages import blocks, decode, metadata, static_shapes, tfrecord
from pipeline.stages import progress as progress_lines
from pipeline.stages.config import ColumnsSpec, JobConfig, columns_spec
from pipeline.stages.features import build_embedding_weights
from pipeline.stages.validate import Policy


class MaterializeSequenceFeatures(beam.PTransform):
    """SequenceExamples -> padded, length-bucketed [B, T, D] batch records.

    Input: a PCollection of `(position, serialized)` with `position` a sortable
    `(int, int)` (e.g. (file index, record index)), or of bare serialized bytes
    (then position = (-1, crc32 of the bytes), so ordering stays deterministic).
    With `chunked=True` the input elements are lists of `(position, serialized)`.

    Returns a dict of PCollections:
      "batches": (batch_key, batch record bytes, features.BatchStats), the record
        format of `pipeline.stages.batch_format`;
      "errors": validate.ErrorRecord dead letters;
      "plan": a single bucket.BucketPlan (boundaries, batch size);
      "truncated": positions of the records cut to `policy.max_length` steps.
    With an id feature in `context`, records repeating an example id are
    `duplicate_id` dead letters (the one at the smallest position is kept).

    Valid records travel through the grouping steps as `blocks.Block`s (one
    element per chunk and key, not per record), with their bytes
    (`shuffle_payload="bytes"`) or, with `shuffle_payload="reference"`,
    chunks that are `blocks.LocatedChunk`s (`read.ReadRecords(located=True)`)
    and `files` (positions index them), without: records are read back by
    byte offset where their batch is computed (`refs`), so the shuffles move
    40 bytes per record.
    The plan and the batches' ranks are computed from light blocks
    (positions and lengths, `validate.LIGHT`). Writing dynamic batches into
    `shards` from chunks, each record's rank in its bucket comes from them
    too, so the records are grouped twice: with their ranks (by chunk), then
    by shard (`bucket.PlaceRecords`). Otherwise they wait once (for the
    duplicate ids and the plan) and are grouped once per sub-bucket and once
    per shard.
    With `shards` (a `shards.ShardTarget`) the batches are computed where
    their shard is written (`shards.WriteShards`): the dict then has "shards"
    (one `(index, entry, totals, shapes)` per shard) instead of "batches".
    `embedding_files` ({column: .npy path}) replace `embedding_weights` where
    the features run (nothing big is pickled into the DoFn).
    `max_buckets`, `static_shapes`, `drop_remainder`: see
    `pipeline.stages.static_shapes`; with `static_shapes` the dict also has
    "dropped" (`blocks.Block`s of the examples `drop_remainder` dropped).
    """

    def __init__(
        self,
        columns: Sequence,
        context: Mapping[str, object] | None = None,
        *,
        batch_size: int = 64,
        bucket_boundaries: Sequence[int] | str = "auto",
        embedding_weights: Mapping | None = None,
        id_feature: str | None = "id",
        chunked: bool = False,
        policy: Policy | None = None,
        files: Sequence[str] = (),
        embedding_files: Mapping[str, str] | None = None,
        max_buckets: int | None = None,
        static_shapes: bool = False,
        drop_remainder: bool = False,
        shuffle_payload: str = "bytes",
        shards: ShardTarget | None = None,
    ):
        super().__init__()
        if shuffle_payload not in SHUFFLE_PAYLOADS:
            raise ValueError(
                "Invalid value for argument `shuffle_payload`. Expected one of "
                f"{SHUFFLE_PAYLOADS}. Received: shuffle_payload={shuffle_payload!r}"
            )
        self._payload, self._shards = shuffle_payload, shards
        self._max_buckets, self._static = max_buckets, static_shapes
        self._drop_remainder = drop_remainder
        spec = columns_spec(list(columns), dict(context or {}))
        self._columns, self._context = spec.columns, spec.context
        self._batch_size, self._boundaries = batch_size, bucket_boundaries
        if embedding_files:  # loaded where features run: nothing big to pickle
            self._weights = {}
        elif embedding_weights is not None:
            self._weights = dict(embedding_weights)
        else:
            self._weights = build_embedding_weights(self._columns)
        self._id_feature, self._chunked = id_feature, chunked
        self._policy, self._files = policy or Policy(), tuple(files)
        self._embedding_files = dict(embedding_files or {})

    def expand(self, records):
        chunks = records
        if not self._chunked:
            chunks = (
                records
                | "WithPositions" >> beam.Map(_with_position)
                | "Chunk" >> beam.BatchElements(min_batch_size=64, max_batch_size=512)
            )
        record_spec = decode.record_spec(self._columns, self._context, self._id_feature)
        # Located chunks of `files`: bytes dropped, read back by extent later.
        by_reference = self._chunked and bool(self._files)
        by_reference = by_reference and self._payload == "reference"
        checked = chunks | "Validate" >> validate.ValidateRecords(
            record_spec,
            self._policy,
            self._files,
            by_reference=by_reference,
        )
        valid = checked[validate.VALID]  # blocks.Block per chunk
        errors = checked[validate.ERRORS]
        light = chunk_light = checked[validate.LIGHT]  # positions and lengths only
        # Dynamic batches into shards: records placed straight into their
        # batch and shard (`bucket.PlaceRecords`, which drops duplicate ids
        # too); chunks (ReadRecords') give each record a unique position.
        place = self._shards is not None and not self._static and self._chunked
        duplicates = None
        if record_spec.id_feature is not None:
            duplicates = checked[validate.IDS] | "FindDuplicateIds" >> (
                validate.FindDuplicateIds()
            )
            if not place:
                deduped = valid | "DropDuplicateIds" >> validate.DropDuplicateIds(
                    duplicates, self._files, self._policy
                )
                valid = deduped[validate.VALID]
                errors = (errors, deduped[validate.ERRORS]) | "AllInvalid" >> (
                    beam.Flatten()
                )
            light = light | "LightWithoutDuplicates" >> beam.Map(
                validate.without_duplicates,
                duplicates=beam.pvalue.AsDict(duplicates),
            )
        # The plan (and the shard ranks) come from the light blocks: the steps
        # moving the records start without waiting for them to be deduplicated.
        histogram = (
            light
            | "Lengths" >> beam.FlatMap(blocks.histogram)
            | "Histogram" >> beam.CombinePerKey(sum)
        )
        boundaries, batch_size = self._boundaries, self._batch_size
        plan_options = {
            "max_buckets": self._max_buckets,
            "static_shapes": self._static,
            "drop_remainder": self._drop_remainder,
        }
        plan = (
            records.pipeline
            | "PlanSeed" >> beam.Create([None])
            | "Plan"
            >> beam.Map(
                lambda _, h: static_shapes.make_plan(
                    dict(h), boundaries, batch_size, **plan_options
                ),
                h=beam.pvalue.AsList(histogram),
            )
        )
        dropped = ranks = None
        if self._static:
            formed = valid | "FormStaticBatches" >> static_batches.FormStaticBatches(
                plan, drop_remainder=self._drop_remainder
            )
            formed, dropped, ranks = (
                formed["batches"],
                formed[static_batches.DROPPED],
                formed["ranks"],
            )
        else:
            ranks = light | "BatchRanks" >> bucket.BatchRanks(plan)
            if place:
                placed = valid | "PlaceRecords" >> bucket.PlaceRecords(
                    chunk_light, plan, ranks, self._shards.num_shards,
                    duplicates, self._files, self._policy,
                )  # fmt: skip
                formed, ranks = placed["placed"], None
                errors = (errors, placed[validate.ERRORS]) | "AllInvalid" >> (
                    beam.Flatten()
                )
            else:
                formed = valid | "FormBatches" >> bucket.FormBatches(plan)
        out = {
            "errors": errors,
            "plan": plan,
            "truncated": checked[validate.TRUNCATED],
        }
        if dropped is not None:
            out["dropped"] = dropped
        if self._shards is not None:
            target = self._shards
            out["shards"] = formed | "Shards" >> shards.WriteShards(
                target.directory,
                target.num_shards,
                target.compression,
                shards.ShardFeatures(
                    record_spec=record_spec,
                    columns=self._columns,
                    context=self._context,
                    id_feature=self._id_feature,
                    embedding_weights=self._weights,
                    embedding_files=self._embedding_files,
                    files=self._files if by_reference else (),
                    policy=self._policy,
                    length_in_key=self._static,
                ),
                ranks=ranks,
            )
            return out
        out["batches"] = formed | "Features" >> features.ComputeFeatures(
            self._columns,
            self._context,
            self._weights,
            self._id_feature,
            files=self._files if by_reference else (),
            policy=self._policy,
            embedding_files=self._embedding_files,
            length_in_key=self._static,
        )
        return out


SHUFFLE_PAYLOADS = ("bytes", "reference")


class ShardTarget(NamedTuple):
    """Where `MaterializeSequenceFeatures` writes shards itself (`shards`)."""

    directory: str
    num_shards: int
    compression: str = "none"


def _with_position(item):
    if isinstance(item, (bytes, bytearray)):
        return (-1, zlib.crc32(item)), bytes(item)
    position, data = item
    return tuple(position), data


def _sum_stats(values):
    total = [0, 0, 0, 0]
    for v in values:
        for i in range(4):
            total[i] += v[i]
    return tuple(total)


def build(
    p: beam.Pipeline,
    *,
    config: JobConfig,
    spec: ColumnsSpec,
    files: Sequence[str],
    directory: str,
    num_shards: int,
    embedding_weights: Mapping,
    info: metadata.StaticInfo,
) -> None:
    """Adds the whole job to `p`, writing into `directory` (the staging dir)."""
    payload = config.shuffle_payload_for(
        files, in_process=runner.groups_objects(p.runner)
    )
    read_out = (
        p
        | "ListFiles" >> beam.Create(list(enumerate(files)))
        | "Read" >> read.ReadRecords(located=payload == "reference")
    )
    out = read_out.records | "Materialize" >> MaterializeSequenceFeatures(
        spec.columns,
        spec.context,
        batch_size=config.batch_size,
        bucket_boundaries=config.bucket_boundaries,
        embedding_weights=embedding_weights,
        id_feature=config.id_feature,
        chunked=True,
        policy=Policy.of(config),
        files=files,
        embedding_files={
            name: f"{directory}/{rel}" for name, rel in info.embeddings.items()
        },
        max_buckets=config.max_buckets,
        static_shapes=config.static_shapes,
        drop_remainder=config.drop_remainder,
        shuffle_payload=payload,
        shards=ShardTarget(directory, num_shards, config.compression),
    )
    # Through a Map: Beam's legacy BundleBasedDirectRunner (the local runner
    # that retries bundles) mis-resolves side inputs read straight from a
    # multi-output ParDo.
    shard_infos = out["shards"][shards.SHARDS] | "ShardInfos" >> beam.Map(tuple)
    static = {}
    if config.static_shapes:  # side inputs of the metadata step
        static = static_batches.metadata_side_inputs(
            out, shard_infos, directory=directory, files=files
        )
    if config.progress:  # side branches: log lines, no output
        total = (
            sum(map(tfrecord.file_size, files))
            if progress.one_worker(p.options)
            else None
        )
        started = time.monotonic() if total is not None else None
        _ = read_out.records | "ProgressRead" >> progress.LogProgress(
            "read", progress_lines.chunk_size, total_bytes=total, started=started
        )
        _ = out["shards"][shards.WRITTEN] | "ProgressFeatures" >> progress.LogProgress(
            "features", shards.examples_measure, unit="examples", started=started
        )
    errors = (read_out[read.READ_ERRORS], out["errors"]) | "AllErrors" >> beam.Flatten()
    error_infos = errors | "WriteErrors" >> write.WriteErrors(directory, files)
    totals = (
        shard_infos
        | "Stats" >> beam.Map(lambda info: info[2])
        | "SumStats" >> beam.CombineGlobally(_sum_stats)
    )
    _ = (
        p
        | "MetadataSeed" >> beam.Create([None])
        | "WriteMetadata"
        >> beam.Map(
            _write_metadata,
            directory=directory,
            info=info,
            # Through a Map, as shard_infos.
            counts=beam.pvalue.AsDict(
                read_out[read.COUNTS] | "FileCounts" >> beam.Map(tuple)
            ),
            error_infos=beam.pvalue.AsList(error_infos),
            shard_infos=beam.pvalue.AsList(shard_infos),
            totals=beam.pvalue.AsSingleton(totals),
            plan=beam.pvalue.AsSingleton(out["plan"]),
            truncated=beam.pvalue.AsSingleton(
                out["truncated"] | "CountTruncated" >> beam.combiners.Count.Globally()
            ),
            truncated_first=beam.pvalue.AsSingleton(
                out["truncated"]
                | "FirstTruncated"
                >> beam.CombineGlobally(  # a plain CombineFn: works on every runner
                    beam.combiners.TopCombineFn(
                        metadata.MAX_ERROR_POSITIONS, reverse=True
                    )
                )
            ),
            config=config,
            **static,
        )
    )


def _write_metadata(
    _,
    directory,
    info,
    counts,
    error_infos,
    shard_infos,
    totals,
    plan,
    truncated,
    truncated_first,
    config,
    shapes=None,
    dropped=None,
):
    md = metadata.assemble(
        info,
        boundaries=plan.boundaries,
        estimated_efficiency=plan.estimated_efficiency,
        records_per_file=counts,
        dead_letters=error_infos,
        totals=metadata.Totals(*(totals or (0, 0, 0, 0))),
        shards=[info[1] for info in sorted(shard_infos, key=lambda s: s[0])],
        truncated_positions=truncated_first,
        truncated=truncated,
        **static_shapes.metadata_args(
            config,
            shapes={tuple(k): n for k, n in shapes or []},
            dropped=sum(d["count"] for d in dropped or []),
            dropped_files=[f for d in dropped or [] for f in d["files"]],
            depth=sum(s.width for s in info.layout),
        ),
    )
    known = {info[1]["file"]: info[4] for info in shard_infos}  # not read back
    metadata.write_metadata(directory, md, known)
    return md


def run(stages: Mapping, beam_argv: Sequence[str] = ()):
    """Builds the job (`build(p, **stages)`) on the runner `beam_argv` names and
    runs it to the end; returns Beam's `PipelineResult`. metadata.json records
    that runner (`engines.runner_name`: `FlinkRunner`, `DirectRunner`, ...).

    Raises:
      RuntimeError: the pipeline ended in another state than DONE.
    """
    options = PipelineOptions(list(beam_argv))
    p = beam.Pipeline(
        runner=runner.make_runner(options, stages["files"]), options=options
    )
    info = dataclasses.replace(stages["info"], runner=engines.runner_name(beam_argv))
    build(p, **{**stages, "info": info})  # metadata.json names the runner
    result = runner.run(p)
    state = result.wait_until_finish()
    if state != PipelineState.DONE:
        raise RuntimeError(f"The Beam pipeline ended in state {state}")
    return result


__all__ = ["MaterializeSequenceFeatures", "build", "run"]
