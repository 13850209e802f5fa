"""Beam wrapper of the dead-letter output: `WriteErrors`.

Place in the flow: validate -> **write** -> metadata. Dead-letter files are
`pipeline.stages.output`'s, shared with the tfdata engine; shards are written
by `pipeline.beam.shards.WriteShards`.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam

from pipeline.stages import output


class WriteErrors(beam.PTransform):
    """ErrorRecord -> errors/<reason>.jsonl (sorted by position); returns
    `output.write_dead_letters`' `{reason, file, count, positions}` per reason
    present."""

    def __init__(self, directory: str, files: Sequence[str]):
        super().__init__()
        self._directory, self._files = directory, list(files)

    def expand(self, errors):
        return (
            errors
            | "KeyByReason" >> beam.Map(lambda e: (e.reason.value, e))
            | "GroupByReason" >> beam.GroupByKey()
            | "WriteReason"
            >> beam.Map(_write_reason, directory=self._directory, files=self._files)
        )


def _write_reason(item, directory, files):
    reason, errors = item
    return output.write_dead_letters(directory, reason, errors, files)
