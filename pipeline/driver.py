"""The driver: prepares a run, picks an engine, moves the output into place.

Place in the flow: cli -> **driver** -> engine (`pipeline.beam.job` or
`pipeline.tfdata.engine`) -> stages. The only module that knows both engines;
it imports the chosen one when the run starts, so a tfdata run never loads
Beam. Everything that can fail before work starts (input, columns, output) is
checked first (`prepare`); output goes to a staging location (`output.Staging`)
put in place (`stages.publish`) only once the engine wrote metadata.json.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence

import transforms
from pipeline.stages import (
    analysis,
    bucket,
    decode,
    features,
    fileio,
    metadata,
    output,
    paths,
    tfrecord,
)
from pipeline.stages import config as config_lib
from pipeline.stages.config import ColumnsSpec, JobConfig


@dataclasses.dataclass
class RunResult:
    """What `run` returns: the metadata, the Beam result (None for tfdata), time."""

    metadata: dict
    pipeline_result: object
    seconds: float


def prepare(config: JobConfig) -> tuple[ColumnsSpec, list[str], int]:
    """Checks everything that can fail before work starts.

    Returns:
      `(spec, files, num_shards)`: the columns, the sorted input files and the
      number of shards (`--num_shards`, or one per 256 MiB of input).
    """
    spec = config_lib.load_job_columns(config)
    files = tfrecord.match_files(config.input_pattern)
    tfrecord.check_readable(files)
    paths.check_output_location(
        config.output_dir,
        overwrite=config.overwrite,
        reads=read_files(config, spec, files),
    )
    num_shards = config.num_shards or bucket.default_num_shards(
        sum(tfrecord.file_size(f) for f in files)
    )
    return spec, files, num_shards


def read_files(
    config: JobConfig, spec: ColumnsSpec, files: Sequence[str]
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


def static_info(
    config: JobConfig,
    spec: ColumnsSpec,
    files: Sequence[str],
    embeddings: dict,
    engine: str,
    assets: Sequence[str] = (),
) -> metadata.StaticInfo:
    """The facts of a run metadata.json records, known before the engine runs."""
    return metadata.StaticInfo(
        engine=engine,
        layout=tuple(transforms.column_layout(list(spec.columns))),
        columns_file={"path": spec.path, "sha256": spec.sha256},
        context=config_lib.context_spec_json(spec.context),
        id_feature=decode.id_feature_of(spec.context, config.id_feature),
        batch_size=config.batch_size,
        input_pattern=config.input_pattern,
        files=tuple(files),
        embeddings=dict(embeddings),
        compression=config.compression,
        assets=tuple(assets),
        max_buckets=config.max_buckets,
    )


def analyze(
    *,
    config: JobConfig,
    spec: ColumnsSpec,
    files: Sequence[str],
    directory: str,
    beam_argv: Sequence[str] = (),
) -> ColumnsSpec:
    """Runs the analyze pass `spec.requests` ask for on `config.engine`, writing
    DIR/assets under `directory`.

    Returns:
      The `ColumnsSpec` rebuilt with the results (`spec` itself if it asks for
      nothing).
    """
    requests = analysis.check_requests(spec.requests)
    if not requests:
        return spec
    stages = dict(
        config=config, spec=spec, files=files, directory=directory, requests=requests
    )
    if config.engine == "tfdata":
        from pipeline.tfdata import analyze as tfdata_analyze

        tfdata_analyze.run(**stages)
    else:
        from pipeline.beam import analyze as beam_analyze

        beam_analyze.run(**stages, beam_argv=beam_argv)
    return config_lib.load_columns(
        spec.path, analysis=analysis.load_analysis(directory)
    )


def run(config: JobConfig, beam_argv: Sequence[str] = ()) -> RunResult:
    """Runs the job (engine per `config.engine`) and moves the output into place.

    Args:
      config: The job's flags.
      beam_argv: Beam pipeline options (the Beam engine only), e.g.
        `["--runner=DataflowRunner", ...]`.

    Raises:
      FileNotFoundError: no input file / columns file.
      FileExistsError: DIR exists, is not empty and `overwrite` is false.
    """
    start = time.time()
    spec, files, num_shards = prepare(config)
    staging = output.Staging(config.output_dir, config.overwrite)
    try:
        assets = []
        stages = dict(config=config, spec=spec, files=files, directory=staging.path)
        if config.analyze:  # DIR/assets first; the columns then use them
            spec = stages["spec"] = analyze(**stages, beam_argv=beam_argv)
            assets = analysis.asset_files(staging.path)
        weights = features.build_embedding_weights(spec.columns)
        embeddings = features.save_embedding_weights(staging.path, weights)
        info = static_info(config, spec, files, embeddings, config.engine, assets)
        stages.update(num_shards=num_shards, embedding_weights=weights, info=info)
        result = None
        if config.engine == "tfdata":
            from pipeline.tfdata import engine

            engine.run(**stages)
        else:
            from pipeline.beam import job

            result = job.run(stages, beam_argv)
        md = json.loads(fileio.read_bytes(f"{staging.path}/{metadata.METADATA_FILE}"))
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    return RunResult(md, result, time.time() - start)
