"""A Beam plugin for the Flink / Spark tests (tests/pipeline/beam/
test_flink_spark.py, started by `engine_runs.start_job`): each SDK worker imports it at start
(`--beam_plugins=engine_probe`), and with SEQSHARDS_PROBE_DIR set it wraps the
per-batch feature computation of the shard writer (`shards._WriteShardDoFn.
_compute`, what the job runs) and of `features._FeaturesDoFn._compute` (the
`batches` of `MaterializeSequenceFeatures` without shards); no hook in the
library:

* every process that computes a batch leaves `<dir>/features-<pid>`, and every
  process that validates a chunk `<dir>/validate-<pid>` (and reads a file
  `<dir>/read-<pid>`), so the test sees how
  many worker processes did the work;
* with SEQSHARDS_PROBE_PAUSE=1 the first batch computed by any worker (the first
  to create `<dir>/paused`, holding its pid) stops there until killed: the test
  SIGKILLs that process in the middle of computing features. The retried work
  finds `paused` present and goes on.
"""

import os
import time

from pipeline.beam import features, read, shards, validate

PROBE_DIR = os.environ.get("SEQSHARDS_PROBE_DIR")
PAUSE = os.environ.get("SEQSHARDS_PROBE_PAUSE") == "1"
PAUSED_FILE = "paused"
PAUSE_SECONDS = 600  # the test kills the process long before


def _claim_pause(directory: str) -> bool:
    """True for exactly one caller across all processes (O_EXCL create)."""
    try:
        fd = os.open(
            os.path.join(directory, PAUSED_FILE), os.O_CREAT | os.O_EXCL | os.O_WRONLY
        )
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _wrap(do_fn_class, directory: str) -> None:
    """Wraps `do_fn_class._compute` (once per process)."""
    compute = do_fn_class._compute
    if getattr(compute, "probed", False):
        return

    def probed(self, item):
        open(os.path.join(directory, f"features-{os.getpid()}"), "a").close()
        if PAUSE and _claim_pause(directory):
            time.sleep(PAUSE_SECONDS)
        return compute(self, item)

    probed.probed = True
    do_fn_class._compute = probed


def _record(do_fn_class, stage: str, directory: str) -> None:
    """Wraps `do_fn_class.process`: each process that runs it leaves
    `<dir>/<stage>-<pid>` ("validate": a small input has few shards, so few
    processes compute features; its many chunks show the workers sharing;
    "read": the input files, one element each)."""
    process = do_fn_class.process
    if getattr(process, "probed", False):
        return

    def probed(self, element):
        open(os.path.join(directory, f"{stage}-{os.getpid()}"), "a").close()
        return process(self, element)

    probed.probed = True
    do_fn_class.process = probed


def _install(directory: str) -> None:
    for do_fn_class in (shards._WriteShardDoFn, features._FeaturesDoFn):
        _wrap(do_fn_class, directory)
    _record(validate._ValidateDoFn, "validate", directory)
    _record(read._ReadFileDoFn, "read", directory)


if PROBE_DIR:
    _install(PROBE_DIR)
