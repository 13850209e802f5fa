"""The tf.data analyze pass (`--analyze` with `--engine tfdata`).

Place in the flow: read -> validate -> drop duplicate ids -> **analyze** ->
DIR/assets, in this process, over the engine's chunks (`chunks`) before the
job. The accumulators are `pipeline.stages.analysis`'s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pipeline.stages import decode, progress, tfrecord, validate
from pipeline.stages.analysis import (
    Moments,
    partial_results,
    rank_values,
    request_limits,
    value_spec,
    write_assets,
)
from pipeline.tfdata.chunks import checked_chunks, drop_duplicates


def run(*, config, spec, files: Sequence[str], directory: str, requests) -> dict:
    """The pass in this process, over the engine's chunks and checks; writes
    DIR/assets and returns what `analysis.write_assets` returns."""
    record_spec = decode.record_spec(spec.columns, spec.context, config.id_feature)
    decoder = decode.Decoder(record_spec)
    values = decode.Decoder(value_spec(record_spec, requests))
    policy = validate.Policy.of(config)
    report = None
    if config.progress:
        total = sum(tfrecord.file_size(f) for f in files)
        report = progress.Progress("analyze pass", total_bytes=total)
    moments: dict[str, Moments] = {}
    counts: dict[str, Counter] = {}
    first_ids = validate.FirstIdWins()
    for chunk, read_errors, nbytes, result in checked_chunks(
        files, decoder, record_spec, policy
    ):
        valid = drop_duplicates(record_spec, result, files, first_ids)[0]
        if valid:
            m, c = partial_results(values, [data for _, _, data in valid], requests)
            for key, part in m.items():
                moments[key] = moments.get(key, Moments()).merge(part)
            for key, part in c.items():
                counts.setdefault(key, Counter()).update(part)
        if report:
            report.add(len(chunk) + len(read_errors), nbytes)
    if report:
        report.done()
    limits = request_limits(requests)
    ranked = {key: rank_values(counts.get(key, {}), limits[key]) for key in limits}
    return write_assets(directory, requests, moments, ranked)
