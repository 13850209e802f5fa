"""A Beam plugin for the Flink / Spark tests (tests/pipeline/beam/
test_flink_spark.py, started by `engine_runs.start_job`): each SDK worker imports it at start
(`--beam_plugins=engine_probe`), and with SEQSHARDS_PROBE_DIR set it wraps the
features DoFn's per-batch computation (no hook in the library):

* every process that computes a batch leaves `<dir>/features-<pid>`, so the test
  sees how many worker processes did the work;
* with SEQSHARDS_PROBE_PAUSE=1 the first batch computed by any worker (the first
  to create `<dir>/paused`, holding its pid) stops there until killed: the test
  SIGKILLs that process in the middle of computing features. The retried work
  finds `paused` present and goes on.
"""

import os
import time

from pipeline.beam import features

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


def _install(directory: str) -> None:
    """Wraps `_FeaturesDoFn._compute` (once per process)."""
    compute = features._FeaturesDoFn._compute
    if getattr(compute, "probed", False):
        return

    def probed(self, item):
        open(os.path.join(directory, f"features-{os.getpid()}"), "a").close()
        if PAUSE and _claim_pause(directory):
            time.sleep(PAUSE_SECONDS)
        return compute(self, item)

    probed.probed = True
    features._FeaturesDoFn._compute = probed


if PROBE_DIR:
    _install(PROBE_DIR)
