"""The Beam runner choice: an in-process runner unless `--runner` names another.

Place in the flow: used by the Beam job and the Beam analyze pass to run
their pipelines. Beam's DirectRunner would first try to download and start
Prism, which fails offline. In one process (`--direct_running_mode
in_memory`, Beam's default) the job runs on Beam's bundle-based direct
runner while the input is at most `IN_PROCESS_BYTES_SHARE` of the machine's
memory: it hands elements from step to step, grouping steps included, as the
Python objects they are, where the FnApiRunner (what Beam's DirectRunner uses
for batch jobs) encodes every element into its data plane, copies it into
grouping buffers, decodes and encodes it again (on the 200k bench data the
job's CPU per example: 1.16x the tfdata engine's, against 1.40x by reference
and 2.11x with bytes on the FnApiRunner; README, "The Beam job's I/O, CPU and
memory"). But it does not fuse steps: a step's whole output is held before
the next runs, so the input read is held in memory (peak RSS ~1.2 GB plus
~1.3x the input; 7.2 GB at 2M bench examples, where the FnApiRunner, by
reference, streams through fused stages in 2.0 GB). Larger inputs, worker
processes or threads (`--direct_running_mode multi_processing|
multi_threading`) and `--runner FnApiRunner` run on the FnApiRunner.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)

from pipeline.stages import fileio

# `--runner` values that mean Beam's default, local runner.
DIRECT_NAMES = (None, "DirectRunner", "direct")
# One process runs on the bundle-based runner while the input is at most this
# share of the machine's memory (that runner holds the input in memory).
IN_PROCESS_BYTES_SHARE = 1 / 8


class JobServerOptions(PipelineOptions):
    """Options of Beam's Java job servers that its Python SDK does not declare,
    set by `beam.engines` for the local Flink/Spark engines: `flinkConfDir`
    (Flink's restart strategy) and `environmentExpirationMillis` (a killed SDK
    worker is replaced). Declared so that parsing them does not log
    "Unparseable argument ... Did you mean --flink_version?"; the portable
    runner sends them to the job server as before (it adds the job server's own
    option descriptions, skipping names already declared here)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--flink_conf_dir",
            default=None,
            help="Directory of the flink-conf.yaml the Flink job server loads.",
        )
        parser.add_argument(
            "--environment_expiration_millis",
            type=int,
            default=None,
            help="Milliseconds after which an SDK worker environment is replaced.",
        )


def make_runner(options: PipelineOptions, files: Sequence[str] = ()):
    """The runner `options` name for a job reading `files`. For DirectRunner/
    None: the bundle-based direct runner where `in_process`, else the
    FnApiRunner (`direct_running_mode`, `direct_num_workers` apply), as for
    `--runner FnApiRunner`, its data plane made safe by
    `untimed_runner_data_plane`."""
    if in_process(options, files):
        from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

        return BundleBasedDirectRunner()
    name = options.view_as(StandardOptions).runner
    if name in (*DIRECT_NAMES, "FnApiRunner"):
        from apache_beam.runners.portability.fn_api_runner import fn_runner

        untimed_runner_data_plane()
        return fn_runner.FnApiRunner()
    return name


def in_process(options: PipelineOptions, files: Sequence[str] = ()) -> bool:
    """Whether a job reading `files` runs on the bundle-based direct runner:
    Beam's default runner in its default mode (`in_memory`, one process) on
    an input of at most `IN_PROCESS_BYTES_SHARE` of this machine's memory, or
    that runner named (`--runner BundleBasedDirectRunner`)."""
    name = options.view_as(StandardOptions).runner
    if name == "BundleBasedDirectRunner":
        return True
    mode = options.view_as(DirectOptions).direct_running_mode
    if name not in DIRECT_NAMES or mode != "in_memory":
        return False
    return sum(map(fileio.size, files)) <= IN_PROCESS_BYTES_SHARE * physical_memory()


def run(p) -> object:
    """`p.run()` without Beam's runner-API round trip: for a runner that is
    not FnApi-compatible (the bundle-based one) Beam's default
    (`test_runner_api="AUTO"`) first serializes the pipeline to its proto and
    builds it again, a check for Beam's own tests that costs ~0.5 s of CPU a
    job (py-spy, the sample). The other runners skip it anyway. Returns
    Beam's `PipelineResult`."""
    return p.run(test_runner_api=False)


def groups_objects(runner) -> bool:
    """Whether `runner` (a Pipeline's) groups Python objects without copying
    them: the bundle-based direct runner that `in_process` picks."""
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

    return isinstance(runner, BundleBasedDirectRunner)


def physical_memory() -> int:
    """This machine's memory in bytes (`sysconf`; Linux and macOS)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


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
