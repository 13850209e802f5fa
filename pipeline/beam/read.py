"""Beam wrapper of reading: `ReadRecords`, input files -> chunks of records.

Place in the flow: **read** -> validate. Framing, CRC and resync are
`pipeline.stages.tfrecord`'s; damaged stretches leave as dead letters.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.beam import NAMESPACE
from pipeline.stages import tfrecord
from pipeline.stages.blocks import LocatedChunk
from pipeline.stages.validate import read_error

COUNTS = "counts"
READ_ERRORS = "read_errors"


class ReadRecords(beam.PTransform):
    """(file_index, path) -> chunks [(position, bytes)]; outputs `.read_errors`
    (ErrorRecord) and `.counts` (file_index, records in the file).

    With `located`, each chunk is a `blocks.LocatedChunk` (the same records
    with their byte offsets), so validation can keep records by reference.
    """

    def __init__(self, chunk_size: int = 512, *, located: bool = False):
        super().__init__()
        self._chunk_size, self._located = chunk_size, located

    def expand(self, files):  # (file_index, path)
        return (
            files
            | "Spread" >> beam.Reshuffle()
            | "ReadFile"
            >> beam.ParDo(_ReadFileDoFn(self._chunk_size, self._located)).with_outputs(
                READ_ERRORS, COUNTS, main="records"
            )
        )


class _ReadFileDoFn(beam.DoFn):
    def __init__(self, chunk_size, located=False):
        self._chunk_size, self._located = chunk_size, located
        self._read = Metrics.counter(NAMESPACE, "records_read")

    def process(self, item):
        file_index, path = item
        total = 0
        for records, errors, offsets in tfrecord.read_file_located(
            path, file_index, chunk_size=self._chunk_size
        ):
            total += len(records) + len(errors)
            self._read.inc(len(records) + len(errors))
            if records and self._located:
                yield LocatedChunk(records, np.asarray(offsets, np.int64))
            elif records:
                yield records
            for position, err in errors:
                error = read_error(position, err)
                Metrics.counter(NAMESPACE, f"errors_{error.reason.value}").inc()
                yield beam.pvalue.TaggedOutput(READ_ERRORS, error)
        yield beam.pvalue.TaggedOutput(COUNTS, (file_index, total))
