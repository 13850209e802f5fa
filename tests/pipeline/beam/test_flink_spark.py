"""The job on Apache Flink and Apache Spark (Beam's portable runners), with SDK
workers in separate processes, and one of them SIGKILLed mid-run.

Each run is `python -m pipeline ... --runner FlinkRunner` (or SparkRunner) with
no engine flags: the defaults of pipeline/beam/engines.py (the local engine
inside the job server `make runners` fetched, PROCESS workers on this
interpreter, 2 slots). The features DoFn is watched in the workers by the Beam
plugin tests/support/engine_probe.py (no hook in the library).

Per engine:
* the bad-input dataset (every proto-level reason, a corrupt and a truncated
  record) and the sample: the DirectRunner's bytes (metadata.json apart from
  `runner`), exact accounting, features computed in >= 2 worker processes;
* the sample with a worker SIGKILLed while it computes features: Flink restarts
  the failed tasks and the output is the DirectRunner's bytes again: nothing
  lost, nothing twice (that run is Flink's sample run); Spark's `local[2]` does
  not retry a task, so the job fails cleanly: non-zero exit, no output
  directory, no staging directory. The two kill runs run at once.
Skipped only without `java` on PATH (`make test` fetches the job servers first).
"""

import glob
import pathlib
import shutil
import time

import pytest
from engine_runs import (
    RUNNERS,
    feature_pids,
    finish,
    kill_paused_worker,
    log_tail,
    paths,
    probed_pids,
    same_output,
    start_job,
)
from repo_paths import ROOT

from pipeline.__main__ import main

SAMPLE = ["--input", f"{ROOT}/data/sample-*.tfrecord", "--columns", f"{ROOT}/data/columns.yaml"]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("java") is None,
        reason="no `java` on PATH: the Flink and Spark job servers are Java programs",
    ),
]


@pytest.fixture(scope="module")
def references(dataset, tmp_path_factory):
    """DirectRunner runs (in this process) of the two inputs, with their argv."""
    base = tmp_path_factory.mktemp("engines")
    inputs = {
        "bad": ["--input", dataset["pattern"], "--columns", dataset["columns"],
                "--batch_size", "16", "--num_shards", "3"],
        # Two shards: the shard writers (where features are computed) are two
        # elements the engine can give two workers.
        "sample": [*SAMPLE, "--num_shards", "2"],
    }  # fmt: skip
    for name, argv in inputs.items():
        out = str(base / f"direct-{name}")
        assert main([*argv, "--output", out, "--no_progress"]) == 0
    return base, inputs


@pytest.mark.parametrize(
    "engine, data", [("flink", "bad"), ("spark", "bad"), ("spark", "sample")]
)
def test_engine_output_equals_direct_runner_in_two_worker_processes(
    engine, data, references, tmp_path
):
    base, inputs = references
    out, probe, log = paths(tmp_path)
    argv = [*inputs[data], "--output", str(out), "--runner", RUNNERS[engine]]
    started = time.time()
    rc = finish(start_job(argv, probe, log, pause=False), log)
    assert rc == 0, log_tail(log)
    print(f"{engine}: {data} run {time.time() - started:.0f} s")
    same_output(out, base / f"direct-{data}", (RUNNERS[engine], "DirectRunner"))
    computed = feature_pids(probe)
    pids = computed | probed_pids(probe, "validate") | probed_pids(probe, "read")
    assert computed, "no worker process computed features"
    assert len(pids) >= 2, f"the work ran in fewer than 2 processes: {pids}"


def test_a_killed_worker_flink_retries_without_loss_spark_fails_cleanly(
    references, tmp_path
):
    """Both engines at once (Flink's restarts mostly wait for the dead worker's
    cache entry to expire: Spark's run fills that time)."""
    base, inputs = references
    jobs = {}
    for engine in RUNNERS:
        out, probe, log = paths(tmp_path / engine)
        argv = [*inputs["sample"], "--output", str(out), "--runner", RUNNERS[engine]]
        jobs[engine] = (out, probe, log, start_job(argv, probe, log, pause=True))
    started = time.time()
    killed = {
        e: kill_paused_worker(probe, proc) for e, (_, probe, _, proc) in jobs.items()
    }
    codes = {e: finish(proc, log) for e, (_, _, log, proc) in jobs.items()}
    print(f"kill runs {time.time() - started:.0f} s after the kills")
    out, probe, log, _ = jobs["flink"]  # Flink restarts the failed tasks
    assert codes["flink"] == 0, log_tail(log)
    others = feature_pids(probe) - {killed["flink"]}
    assert killed["flink"] in feature_pids(probe) and others, "no worker took over"
    same_output(out, base / "direct-sample", ("FlinkRunner", "DirectRunner"))
    out, _, log, _ = jobs["spark"]  # Spark's local[2] tries a task once
    assert codes["spark"] != 0
    assert "failed in state FAILED" in pathlib.Path(log).read_text(errors="replace")
    assert not out.exists() and not glob.glob(f"{out}.staging-*")
