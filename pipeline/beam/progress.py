"""Beam progress: `LogProgress` side branches and whether one worker sees all.

Place in the flow: beside the read and features steps (fused with them, no
data materialized); the lines are `pipeline.stages.progress.Progress`'s.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from pipeline.beam.runner import DIRECT_NAMES
from pipeline.stages.progress import Progress


def one_worker(options) -> bool:
    """Whether one in-process worker runs every stage (then its share is the job's).

    Args:
      options: The job's Beam `PipelineOptions`.
    """
    name = options.view_as(StandardOptions).runner
    direct = options.view_as(DirectOptions)
    local = (*DIRECT_NAMES, "FnApiRunner", "BundleBasedDirectRunner")
    return name in local and direct.direct_num_workers == 1


class LogProgress(beam.PTransform):
    """A side branch that logs a stage's progress; outputs nothing.

    Args:
      label: Stage name in the lines ("read", "features").
      measure: Picklable `element -> (count, bytes)` (`chunk_size`, `batch_size`).
      total_bytes: Input size for the share and the ETA; pass it only when one
        worker sees the whole input (the in-process runner), else None.
      unit: What is counted.
      started: `time.monotonic()` when the job started, to time the stage
        from there; only when the job runs in this process (`one_worker`).
        Else the clock starts with the stage's first element, which is right
        where the side branch is fused with the stage, not on the in-process
        bundle-based runner: it hands the branch a step's whole output once
        the step is done (the read: 0.0 s and millions of records/s).
    """

    def __init__(
        self, label, measure, *, total_bytes=None, unit="records", started=None
    ):
        super().__init__()
        self._args = (label, measure, total_bytes, unit, started)

    def expand(self, pcoll):
        return pcoll | "Log" >> beam.ParDo(_LogProgressDoFn(*self._args))


class _LogProgressDoFn(beam.DoFn):
    def __init__(self, label, measure, total_bytes, unit, started):
        self._label, self._measure = label, measure
        self._total_bytes, self._unit = total_bytes, unit
        self._started = started
        self._progress = None

    def process(self, element):
        if self._progress is None:  # the clock starts with the stage's first element
            self._progress = Progress(
                self._label, total_bytes=self._total_bytes, unit=self._unit
            )
            if self._started is not None:  # ...or with the job, in this process
                self._progress.start = self._progress.last = self._started
        self._progress.add(*self._measure(element))
        return ()

    def teardown(self):
        if self._progress is not None and self._progress.count:
            self._progress.done(at_last_add=True)
