"""The Beam analyze pass (`--analyze` with the Beam engine).

Place in the flow: read -> validate -> drop duplicate ids -> **analyze** ->
DIR/assets, as its own pipeline before the job. The accumulators (`Moments`,
value counts, ranking) are `pipeline.stages.analysis`'s, wrapped here in
CombineFns.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from pipeline.beam import read, runner, validate
from pipeline.stages import decode
from pipeline.stages.analysis import (
    Moments,
    partial_results,
    request_limits,
    value_spec,
    write_assets,
)
from pipeline.stages.validate import Policy

MOMENTS = "moments"
COUNTS = "counts"


class AnalyzeValues(beam.PTransform):
    """Valid records `(position, length, bytes)` -> outputs `moments`
    (key, Moments) and `ranked` (key, [(value, count)] best first)."""

    def __init__(self, record_spec: decode.RecordSpec, requests):
        super().__init__()
        self._spec = value_spec(record_spec, requests)
        self._requests = tuple(requests)

    def expand(self, valid):
        partials = (
            valid
            | "Bytes" >> beam.Map(lambda member: member[2])
            | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=1024)
            | "Partials"
            >> beam.ParDo(_PartialsDoFn(self._spec, self._requests)).with_outputs(
                COUNTS, main=MOMENTS
            )
        )
        moments = partials[MOMENTS] | "CombineMoments" >> beam.CombinePerKey(
            _MomentsCombineFn()
        )
        ranked = (
            partials[COUNTS]  # ((key, value), count)
            | "SumCounts" >> beam.CombinePerKey(sum)
            | "ByKey" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
            | "RankValues"
            >> beam.CombinePerKey(_RankCombineFn(_global_limit(self._requests)))
        )
        return {MOMENTS: moments, "ranked": ranked}


class _PartialsDoFn(beam.DoFn):
    def __init__(self, spec, requests):
        self._spec, self._requests = spec, requests
        self._decoder = None

    def setup(self):
        self._decoder = decode.Decoder(self._spec)

    def process(self, batch):
        moments, counts = partial_results(self._decoder, batch, self._requests)
        yield from moments.items()
        for key, per_value in counts.items():
            for value, count in per_value.items():
                yield beam.pvalue.TaggedOutput(COUNTS, ((key, value), count))


class _MomentsCombineFn(beam.CombineFn):
    def create_accumulator(self):
        return Moments()

    def add_input(self, accumulator, moments):
        return accumulator.merge(Moments(*moments))

    def merge_accumulators(self, accumulators):
        out = Moments()
        for accumulator in accumulators:
            out = out.merge(Moments(*accumulator))
        return out

    def extract_output(self, accumulator):
        return Moments(*accumulator)


class _RankCombineFn(beam.CombineFn):
    """`(value, count)` of one key -> the best `limit` by (count desc, value
    asc), all if `limit` is None; accumulators stay bounded by ~2 * limit."""

    def __init__(self, limit: int | None):
        self._limit = limit

    def _trim(self, accumulator):
        if self._limit is None or len(accumulator) <= 2 * self._limit + 64:
            return accumulator
        return heapq.nsmallest(self._limit, accumulator)

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, item):
        value, count = item
        accumulator.append((-count, value))
        return self._trim(accumulator)

    def merge_accumulators(self, accumulators):
        return self._trim(list(itertools.chain.from_iterable(accumulators)))

    def extract_output(self, accumulator):
        best = sorted(accumulator)
        best = best if self._limit is None else best[: self._limit]
        return [(v, -c) for c, v in best]


def _global_limit(requests) -> int | None:
    limits = list(request_limits(requests).values())
    return None if not limits or None in limits else max(limits)


def _write_assets(_, *, directory, requests, moments, ranked):
    return write_assets(directory, requests, dict(moments), dict(ranked))


def build_analysis(
    p: beam.Pipeline, *, config, spec, files: Sequence[str], directory: str, requests
) -> None:
    """Adds the pass to `p`: read -> validate -> drop duplicate ids -> analyze ->
    write DIR/assets (one step, after every combine)."""
    record_spec = decode.record_spec(spec.columns, spec.context, config.id_feature)
    read_out = (
        p
        | "ListFiles" >> beam.Create(list(enumerate(files)))
        | "Read" >> read.ReadRecords()
    )
    checked = read_out.records | "Validate" >> validate.ValidateRecords(
        record_spec, Policy.of(config), files
    )
    valid = checked[validate.VALID]  # blocks.Block per chunk, with the bytes
    if record_spec.id_feature is not None:
        valid = (
            valid
            | "DropDuplicateIds"
            >> validate.DropDuplicateIds(
                checked[validate.IDS]
                | "FindDuplicateIds" >> validate.FindDuplicateIds(),
                files,
            )
        )[validate.VALID]
    members = valid | "Members" >> beam.FlatMap(lambda block: block.members())
    results = members | "Analyze" >> AnalyzeValues(record_spec, requests)
    _ = (
        p
        | "AssetsSeed" >> beam.Create([None])
        | "WriteAssets"
        >> beam.Map(
            _write_assets,
            directory=directory,
            requests=tuple(requests),
            moments=beam.pvalue.AsDict(results[MOMENTS]),
            ranked=beam.pvalue.AsDict(results["ranked"]),
        )
    )


def run(
    *, config, spec, files: Sequence[str], directory: str, requests, beam_argv=()
) -> None:
    """Runs the pass as its own Beam pipeline (same runner and options as the job)."""
    options = PipelineOptions(list(beam_argv))
    p = beam.Pipeline(runner=runner.make_runner(options, files), options=options)
    build_analysis(
        p,
        config=config,
        spec=spec,
        files=files,
        directory=directory,
        requests=requests,
    )
    state = runner.run(p).wait_until_finish()
    if state != PipelineState.DONE:
        raise RuntimeError(f"The analyze pipeline ended in state {state}")
