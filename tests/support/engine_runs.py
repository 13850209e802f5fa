"""Runs of the job on other Beam runners, for the tests that compare them with
the DirectRunner: `same_output` (byte-identical, metadata.json apart from the
runner it names) and, for Flink and Spark (tests/pipeline/beam/
test_flink_spark.py), the job in a subprocess whose SDK workers load the
`engine_probe` plugin (this directory), the probe's findings, and the kill of a
paused worker.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from pipeline_data import dir_bytes
from repo_paths import ROOT

SUPPORT = os.path.dirname(os.path.abspath(__file__))
RUNNERS = {"flink": "FlinkRunner", "spark": "SparkRunner"}
JOB_TIMEOUT = 420  # s; a run here takes 30-140 s


def same_output(out, reference, runners: tuple[str, str]) -> dict:
    """Asserts DIR `out` is byte-identical to DIR `reference`, metadata.json
    equal apart from `runner`, which names `runners` (out's, reference's), and
    the accounting holds; returns out's metadata.json."""
    got, want = dir_bytes(out), dir_bytes(reference)
    md, md_ref = (json.loads(d.pop("metadata.json")) for d in (got, want))
    assert sorted(got) == sorted(want)
    assert got == want
    assert (md.pop("runner"), md_ref.pop("runner")) == runners
    assert md == md_ref
    counts = md["counts"]
    assert counts["examples_written"] + counts["errors_total"] == counts["examples_in"]
    return md


def start_job(
    argv: list[str], probe: str, log: str, *, pause: bool
) -> subprocess.Popen:
    """`python -m pipeline ARGV` in a subprocess whose SDK workers load the
    probe (writing to `probe`; with `pause` the first features batch stops)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, SUPPORT, env.get("PYTHONPATH", "")])
    env["SEQSHARDS_PROBE_DIR"] = probe
    env["SEQSHARDS_PROBE_PAUSE"] = "1" if pause else "0"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.makedirs(probe, exist_ok=True)
    cmd = [sys.executable, "-m", "pipeline", *argv, "--beam_plugins=engine_probe"]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=out)


def finish(proc: subprocess.Popen, log: str) -> int:
    """The job's exit code; fails the test (killing the job) after JOB_TIMEOUT."""
    try:
        return proc.wait(timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the job ran over {JOB_TIMEOUT} s; its log: {log}")


def log_tail(log: str) -> str:
    """The last lines of a job's log, for an assertion's message."""
    with open(log, errors="replace") as f:
        return f.read()[-3000:]


def kill_paused_worker(probe: str, proc: subprocess.Popen) -> int:
    """Waits until a worker pauses inside the features DoFn, SIGKILLs it;
    returns its pid."""
    paused = os.path.join(probe, "paused")
    deadline = time.time() + JOB_TIMEOUT
    while not (os.path.exists(paused) and open(paused).read()):
        assert proc.poll() is None, "the job ended before any worker computed features"
        assert time.time() < deadline, "no worker reached the features DoFn"
        time.sleep(0.2)
    pid = int(open(paused).read())
    os.kill(pid, signal.SIGKILL)
    return pid


def paths(tmp_path) -> tuple:
    """A run's output directory, probe directory and log file (under `tmp_path`,
    created)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return tmp_path / "out", str(tmp_path / "probe"), str(tmp_path / "job.log")


def probed_pids(probe: str, stage: str) -> set[int]:
    """The pids of the processes that ran `stage` ("features": computed batch
    records; "validate": validated chunks of records; "read": read input
    files), from the probe's files."""
    return {
        int(n.split("-")[1]) for n in os.listdir(probe) if n.startswith(f"{stage}-")
    }


def feature_pids(probe: str) -> set[int]:
    """The pids of the processes that computed features."""
    return probed_pids(probe, "features")
