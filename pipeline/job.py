"""The Beam job: `MaterializeSequenceFeatures` and `build(p, ...)` / `run(config)`.

Place in the flow: composes read -> validate -> bucket -> features -> write ->
metadata. Output goes to a staging directory renamed into place by `run` only
after the pipeline finished and metadata.json was written (by the last step,
which depends on every shard and dead-letter file through side inputs).

The runner is the in-process FnApiRunner (what Beam's DirectRunner uses for batch
jobs) unless `--runner` names another: Beam's DirectRunner would first try to
download and start Prism, which fails offline.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zlib
from collections.abc import Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

import transforms
from pipeline import (
    beam_refs,
    blocks,
    bucket,
    decode,
    features,
    fileio,
    metadata,
    paths,
    progress,
    read,
    validate,
    write,
)
from pipeline import config as config_lib
from pipeline.validate import ErrorRecord

NAMESPACE = "seqshards"


class MaterializeSequenceFeatures(beam.PTransform):
    """SequenceExamples -> padded, length-bucketed [B, T, D] batch records.

    Input: a PCollection of `(position, serialized)` with `position` a sortable
    `(int, int)` (e.g. (file index, record index)), or of bare serialized bytes
    (then position = (-1, crc32 of the bytes), so ordering stays deterministic).
    With `chunked=True` the input elements are lists of `(position, serialized)`.

    Returns a dict of PCollections:
      "batches": (batch_key, batch record bytes, features.BatchStats), the record
        format of `pipeline.write`;
      "errors": validate.ErrorRecord dead letters;
      "plan": a single bucket.BucketPlan (boundaries, batch size);
      "truncated": positions of the records cut to `policy.max_length` steps.
    With an id feature in `context`, records repeating an example id are
    `duplicate_id` dead letters (the one at the smallest position is kept).

    Valid records travel through the grouping steps as `blocks.Block`s (one
    element per chunk and key, not per record). With `chunked=True` and `files`
    (positions index `files`, as `read.ReadRecords` gives them) the blocks hold
    no bytes: records are read back by file offset where their batch is
    computed (`beam_refs`), so the shuffles move 24 bytes per record.
    `embedding_files` ({column: .npy path}) replace `embedding_weights` where
    the features run (nothing big is pickled into the DoFn).
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
        policy: validate.Policy | None = None,
        files: Sequence[str] = (),
        embedding_files: Mapping[str, str] | None = None,
    ):
        super().__init__()
        spec = config_lib.columns_spec(list(columns), dict(context or {}))
        self._columns, self._context = spec.columns, spec.context
        self._batch_size, self._boundaries = batch_size, bucket_boundaries
        if embedding_files:  # loaded where features run: nothing big to pickle
            self._weights = {}
        elif embedding_weights is not None:
            self._weights = dict(embedding_weights)
        else:
            self._weights = features.build_embedding_weights(self._columns)
        self._id_feature, self._chunked = id_feature, chunked
        self._policy, self._files = policy or validate.Policy(), tuple(files)
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
        # Positions name records of `files`: bytes dropped, read back later.
        by_reference = self._chunked and bool(self._files)
        checked = chunks | "Validate" >> validate.ValidateRecords(
            record_spec,
            self._policy,
            self._files,
            by_reference=by_reference,
        )
        valid = checked[validate.VALID]  # blocks.Block per chunk
        errors = checked[validate.ERRORS]
        if record_spec.id_feature is not None:
            deduped = valid | "DropDuplicateIds" >> validate.DropDuplicateIds(
                checked[validate.IDS], self._files
            )
            valid = deduped[validate.VALID]
            duplicates = deduped[validate.ERRORS]
            if by_reference:
                duplicates = duplicates | "DuplicateBytes" >> beam_refs.FillErrorBytes(
                    self._files, self._policy
                )
            errors = (errors, duplicates) | "AllInvalid" >> beam.Flatten()
        histogram = (
            valid
            | "Lengths" >> beam.FlatMap(blocks.histogram)
            | "Histogram" >> beam.CombinePerKey(sum)
        )
        boundaries, batch_size = self._boundaries, self._batch_size
        plan = (
            records.pipeline
            | "PlanSeed" >> beam.Create([None])
            | "Plan"
            >> beam.Map(
                lambda _, h: bucket.make_plan(dict(h), boundaries, batch_size),
                h=beam.pvalue.AsList(histogram),
            )
        )
        batches = (
            valid
            | "FormBatches" >> bucket.FormBatches(plan)
            | "Features"
            >> features.ComputeFeatures(
                self._columns,
                self._context,
                self._weights,
                self._id_feature,
                files=self._files if by_reference else (),
                policy=self._policy,
                embedding_files=self._embedding_files,
            )
        )
        return {
            "batches": batches,
            "errors": errors,
            "plan": plan,
            "truncated": checked[validate.TRUNCATED],
        }


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


@dataclasses.dataclass(frozen=True)
class StaticInfo:
    """Driver-side facts metadata.json needs (all JSON-able)."""

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

    def metadata_args(self) -> dict:
        """These facts as `metadata.build_metadata` keyword arguments (each
        field is one of its parameters)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def build(
    p: beam.Pipeline,
    *,
    config: config_lib.JobConfig,
    spec: config_lib.ColumnsSpec,
    files: Sequence[str],
    directory: str,
    num_shards: int,
    embedding_weights: Mapping,
    info: StaticInfo,
) -> None:
    """Adds the whole job to `p`, writing into `directory` (the staging dir)."""
    read_out = (
        p
        | "ListFiles" >> beam.Create(list(enumerate(files)))
        | "Read" >> read.ReadRecords()
    )
    out = read_out.records | "Materialize" >> MaterializeSequenceFeatures(
        spec.columns,
        spec.context,
        batch_size=config.batch_size,
        bucket_boundaries=config.bucket_boundaries,
        embedding_weights=embedding_weights,
        id_feature=config.id_feature,
        chunked=True,
        policy=validate.Policy(
            config.max_sequence_length, config.on_long, config.on_invalid
        ),
        files=files,
        embedding_files={
            name: f"{directory}/{rel}" for name, rel in info.embeddings.items()
        },
    )
    if config.progress:  # side branches: log lines, no output
        total = (
            sum(map(read.file_size, files)) if progress.one_worker(p.options) else None
        )
        _ = read_out.records | "ProgressRead" >> progress.LogProgress(
            "read", progress.chunk_size, total_bytes=total
        )
        _ = out["batches"] | "ProgressFeatures" >> progress.LogProgress(
            "features", progress.batch_size, unit="examples"
        )
    errors = (read_out[read.READ_ERRORS], out["errors"]) | "AllErrors" >> beam.Flatten()
    error_infos = errors | "WriteErrors" >> write.WriteErrors(directory, files)
    shard_infos = out["batches"] | "WriteShards" >> write.WriteShards(
        directory, num_shards, config.compression
    )
    totals = (
        out["batches"]
        | "Stats"
        >> beam.Map(lambda b: (1, b[2].examples, b[2].real_steps, b[2].padded_steps))
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
            # Through a Map: Beam's legacy BundleBasedDirectRunner (the local
            # runner that retries bundles) mis-resolves side inputs read straight
            # from a multi-output ParDo.
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
):
    if not totals:
        totals = (0, 0, 0, 0)
    batches, examples, real, padded = totals
    md = metadata.build_metadata(
        **info.metadata_args(),
        boundaries=plan.boundaries,
        estimated_efficiency=plan.estimated_efficiency,
        records_per_file=counts,
        errors={e["reason"]: e["count"] for e in error_infos},
        error_positions={e["reason"]: e["positions"] for e in error_infos},
        examples_written=examples,
        batches=batches,
        real_steps=real,
        padded_steps=padded,
        shards=[
            {k: v for k, v in s.items() if k != "index"}
            for s in sorted(shard_infos, key=lambda s: s["index"])
        ],
        errors_files=[e["file"] for e in error_infos],
        truncated_positions=truncated_first,
        truncated=truncated,
    )
    metadata.write_metadata(directory, md)
    return md


def make_runner(options: PipelineOptions):
    """The runner `options` name; the in-process FnApiRunner for DirectRunner/None
    (`direct_running_mode` and `direct_num_workers` apply), its data plane made
    safe by `untimed_runner_data_plane`."""
    name = options.view_as(StandardOptions).runner
    if name in (None, "DirectRunner", "direct", "FnApiRunner"):
        from apache_beam.runners.portability.fn_api_runner import fn_runner

        untimed_runner_data_plane()
        return fn_runner.FnApiRunner()
    return name


def untimed_runner_data_plane() -> None:
    """Turns off the timed flush of the FnApiRunner's gRPC data plane (this process).

    With gRPC workers (`--direct_running_mode=multi_processing` or
    `multi_threading`) Beam's runner sends a stage's input through a
    `TimeBasedBufferingClosableOutputStream` (`worker_handlers.
    DATA_BUFFER_TIME_LIMIT_MS`, 1000 ms). Its flusher thread takes the buffer,
    hands it to the send queue, then clears the buffer; while the queue is full
    (100 MB) the handing-over blocks, the runner thread writes the next ~10 MB
    chunk of the input into the buffer, and the clear drops it unsent. The
    worker just sees fewer elements: at 200k records a run lost ~4k examples
    in about one run out of three, with no error (tests/pipeline/
    test_runner_data_plane.py reproduces it deterministically). With 0 the
    streams buffer by size, flushed only by the thread that writes, so nothing
    is lost. Batch jobs gain nothing from timed flushes.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


@dataclasses.dataclass
class RunResult:
    """What `run` returns: the metadata, the Beam result (None for tfdata), time."""

    metadata: dict
    pipeline_result: object
    seconds: float


def prepare(config: config_lib.JobConfig):
    """Checks everything that can fail before work starts; returns the pieces."""
    spec = config_lib.load_job_columns(config)
    files = read.match_files(config.input_pattern)
    read.check_readable(files)
    paths.check_output_location(
        config.output_dir,
        overwrite=config.overwrite,
        reads=read_files(config, spec, files),
    )
    num_shards = config.num_shards or bucket.default_num_shards(
        sum(read.file_size(f) for f in files)
    )
    return spec, files, num_shards


def read_files(
    config: config_lib.JobConfig, spec: config_lib.ColumnsSpec, files: Sequence[str]
) -> list[paths.ReadFile]:
    """Every file the job reads: DIR may hold none of them (`--overwrite`
    replaces DIR)."""
    reads = [paths.ReadFile(f, "input file") for f in files]
    columns_file = config.columns_py or config.columns_file
    if columns_file:
        reads.append(paths.ReadFile(columns_file, "columns file"))
    for read_file in paths.column_files(spec.columns):
        fileio.check_supported(read_file.path, read_file.what)
        if "checkpoint" in read_file.what or fileio.exists(read_file.path):
            reads.append(read_file)  # a vocabulary still to compute is not read
    return reads


def static_info(config, spec, files, embeddings, engine, assets=()) -> StaticInfo:
    return StaticInfo(
        engine=engine,
        layout=tuple(transforms.column_layout(list(spec.columns))),
        columns_file={"path": spec.path, "sha256": spec.sha256},
        context=config_lib.context_spec_json(spec.context),
        id_feature=features.id_feature_of(spec.context, config.id_feature),
        batch_size=config.batch_size,
        input_pattern=config.input_pattern,
        files=tuple(files),
        embeddings=dict(embeddings),
        compression=config.compression,
        assets=tuple(assets),
    )


def run(config: config_lib.JobConfig, beam_argv: Sequence[str] = ()) -> RunResult:
    """Runs the job (engine per `config.engine`) and moves the output into place.

    Raises:
      FileNotFoundError: no input file / columns file.
      FileExistsError: DIR exists, is not empty and `overwrite` is false.
    """
    start = time.time()
    spec, files, num_shards = prepare(config)
    staging = write.Staging(config.output_dir, config.overwrite)
    try:
        assets = []
        if config.analyze:  # DIR/assets first; the columns then use them
            from pipeline import analyze

            spec = analyze.run(
                config=config,
                spec=spec,
                files=files,
                directory=staging.path,
                beam_argv=beam_argv,
            )
            assets = analyze.asset_files(staging.path)
        weights = features.build_embedding_weights(spec.columns)
        embeddings = features.save_embedding_weights(staging.path, weights)
        info = static_info(config, spec, files, embeddings, config.engine, assets)
        stages = dict(
            config=config,
            spec=spec,
            files=files,
            directory=staging.path,
            num_shards=num_shards,
            embedding_weights=weights,
            info=info,
        )
        if config.engine == "tfdata":
            from pipeline import tfdata_engine

            result = None
            tfdata_engine.run_engine(**stages)
        else:
            options = PipelineOptions(list(beam_argv))
            p = beam.Pipeline(runner=make_runner(options), options=options)
            build(p, **stages)
            result = p.run()
            state = result.wait_until_finish()
            if state != PipelineState.DONE:
                raise RuntimeError(f"The Beam pipeline ended in state {state}")
        md = json.loads(fileio.read_bytes(f"{staging.path}/{write.METADATA_FILE}"))
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    return RunResult(md, result, time.time() - start)


__all__ = ["MaterializeSequenceFeatures", "build", "run", "RunResult", "ErrorRecord"]
