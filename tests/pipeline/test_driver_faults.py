"""Faults: a SIGKILLed run, bundles that fail and are retried, idempotent writes.

* SIGKILL: the job runs as a subprocess and is killed midway (its staging
  directory exists, metadata.json does not); DIR does not exist, or is still the
  previous complete run with --overwrite; a rerun gives the same bytes as an
  uninterrupted run.
* Retries: Beam's BundleBasedDirectRunner (the default "DirectRunner" in one
  process: runner.make_runner) retries a failed bundle (up to 4 attempts,
  discarding the failed attempt's outputs, like Dataflow/Flink/Spark). Beam's
  FnApiRunner (`--runner FnApiRunner`, or worker processes) does NOT: the job
  fails and leaves no DIR. Failures are injected
  by monkeypatching (no hook in the library): the validate DoFn and the shard
  writer (features and file) each fail on their first attempt per element, after
  emitting their outputs / writing their file. The output must be byte-identical
  to a clean run: every example exactly once, same shard and file names.
"""

import glob
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
from bad_inputs import CATALOG_YAML, frame, record
from engine_runs import same_output
from pipeline_data import dir_bytes
from repo_paths import ROOT  # noqa: E402

from pipeline import driver
from pipeline.beam import shards as beam_shards
from pipeline.beam import validate as beam_validate
from pipeline.stages import output
from pipeline.stages.config import JobConfig

# --- retries ---------------------------------------------------------------------------


def _first_attempt(markers, kind, key) -> bool:
    """True the first time (kind, key) is seen, across pickled copies of a DoFn."""
    name = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
    path = os.path.join(markers, f"{kind}-{name}")
    if os.path.exists(path):
        open(path + ".retried", "w").close()
        return False
    open(path, "w").close()
    return True


@pytest.fixture
def flaky(monkeypatch, tmp_path):
    """The validate DoFn fails on the first attempt of every bundle (after
    emitting outputs), the shard writer on the first attempt of every shard
    (after writing and renaming the shard file)."""
    markers = str(tmp_path / "markers")
    os.mkdir(markers)

    def make_flaky(cls, kind, key_of):
        process, start = cls.process, cls.start_bundle

        def start_bundle(self):
            start(self)
            self._first_of_bundle = True

        def flaky_process(self, element, *args, **kwargs):
            first, self._first_of_bundle = self._first_of_bundle, False
            yield from process(self, element, *args, **kwargs)  # outputs, then...
            if first and _first_attempt(markers, kind, key_of(element)):
                raise RuntimeError(f"injected: {kind} bundle lost")

        monkeypatch.setattr(cls, "start_bundle", start_bundle)
        monkeypatch.setattr(cls, "process", flaky_process)

    make_flaky(
        beam_validate._ValidateDoFn, "validate", lambda chunk: next(iter(chunk))[0]
    )
    make_flaky(beam_shards._WriteShardDoFn, "shard", lambda item: item[0])
    return markers


def run(dataset, out, runner=None, **kw):
    config = JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=str(out),
        columns_file=dataset["columns"],
        batch_size=16,
        num_shards=3,
        progress=False,
        **kw,
    )
    return driver.run(config, ["--runner", runner] if runner else [])


@pytest.fixture(scope="module")
def clean_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "out"
    run(dataset, out, runner="FnApiRunner")
    return out


def test_retried_bundles_yield_each_example_exactly_once(
    dataset, clean_run, flaky, tmp_path
):
    out = tmp_path / "out"
    result = run(dataset, out)  # the default runner in one process
    injected = os.listdir(flaky)
    kinds = {name.split("-")[0] for name in injected if not name.endswith(".retried")}
    assert kinds == {"validate", "shard"}  # every kind failed once...
    failed = [n for n in injected if not n.endswith(".retried")]
    retried = [n for n in injected if n.endswith(".retried")]
    assert len(retried) == len(failed) >= 2  # ...and every failed call was retried
    counts = result.metadata["counts"]
    assert counts["examples_written"] == len(dataset["good"])
    assert counts["examples_written"] + counts["errors_total"] == counts["examples_in"]
    # Same bytes as the clean FnApiRunner run: no duplicate, no missing example,
    # no stray temporary file, the same deterministic shard names; metadata.json
    # differs only in the runner it names.
    same_output(out, clean_run, ("DirectRunner", "FnApiRunner"))


def test_the_fn_api_runner_does_not_retry_and_leaves_no_output(
    dataset, flaky, tmp_path
):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        run(dataset, out, runner="FnApiRunner")  # the first failure ends the job
    assert not any(n.endswith(".retried") for n in os.listdir(flaky))
    assert not out.exists() and not glob.glob(f"{out}.staging-*")


def test_commit_removes_temporaries_of_failed_attempts(tmp_path):
    staging = output.Staging(str(tmp_path / "out"), overwrite=False)
    with open(f"{staging.path}/shards/.part-00000-of-00001.tfrecord.tmp-x", "w") as f:
        f.write("partial")
    staging.commit()
    assert os.listdir(tmp_path / "out" / "shards") == []


def test_overwrite_swaps_directories_in_one_step(tmp_path):
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)  # an older run of ours (what may be replaced)
    (out / "shards" / "part-00000-of-00001.tfrecord").write_bytes(b"old")
    staging = output.Staging(str(out), overwrite=True)
    with open(f"{staging.path}/new.txt", "w") as f:
        f.write("new")
    assert output._exchange(staging.path, str(out)) is True  # Linux renameat2
    assert output._exchange(staging.path, str(out)) is True  # swap back
    staging.commit()
    assert sorted(os.listdir(out)) == ["embeddings", "errors", "new.txt", "shards"]
    assert os.listdir(out / "shards") == []  # the old run is gone
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no .staging / .old left


# --- SIGKILL ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    directory = tmp_path_factory.mktemp("big")
    (directory / "columns.yaml").write_text(CATALOG_YAML)
    for k in range(2):
        records = [record(f"r{k}-{i:05d}", 1 + (i * 7) % 23) for i in range(4000)]
        (directory / f"in-{k}.tfrecord").write_bytes(b"".join(map(frame, records)))
    return directory


def big_config(big_input, out, engine, **kw):
    return JobConfig(
        input_pattern=str(big_input / "in-*.tfrecord"),
        output_dir=str(out),
        columns_file=str(big_input / "columns.yaml"),
        engine=engine,
        batch_size=32,
        progress=False,
        **kw,
    )


def kill_midway(big_input, out, engine, overwrite=False):
    """Starts the CLI, SIGKILLs it once it is working; returns its staging dir."""
    argv = [sys.executable, "-m", "pipeline", "--input", str(big_input / "in-*")]
    argv += ["--columns", str(big_input / "columns.yaml"), "--output", str(out)]
    argv += ["--engine", engine, "--batch_size", "32", "-q"]
    argv += ["--overwrite"] if overwrite else []
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    staging = []
    try:
        while time.time() < deadline and proc.poll() is None:
            staging = glob.glob(f"{out}.staging-*")
            # Midway: tfdata has opened its shard writers (the lengths pass is
            # done); Beam's staging dir exists and its pipeline has started.
            if staging and (engine == "beam" or os.listdir(f"{staging[0]}/shards")):
                time.sleep(1.5 if engine == "beam" else 0.3)
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the job ended before it could be killed"
        assert not os.path.exists(f"{staging[0]}/metadata.json")  # not finished
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return staging[0]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["tfdata", "beam"])
def test_sigkill_midway_leaves_no_dir_and_a_rerun_is_complete(
    engine, big_input, tmp_path
):
    reference = tmp_path / "reference"
    driver.run(big_config(big_input, reference, engine))  # uninterrupted
    out = tmp_path / "out"
    staging = kill_midway(big_input, out, engine)
    assert not out.exists()  # no DIR that looks complete
    assert os.path.isdir(staging)  # the killed run's leftovers, safe to delete
    driver.run(big_config(big_input, out, engine))
    assert dir_bytes(out) == dir_bytes(reference)


@pytest.mark.slow
def test_sigkill_during_overwrite_keeps_the_previous_complete_run(big_input, tmp_path):
    out = tmp_path / "out"
    driver.run(big_config(big_input, out, "tfdata"))
    before = dir_bytes(out)
    kill_midway(big_input, out, "tfdata", overwrite=True)
    assert dir_bytes(out) == before
    driver.run(big_config(big_input, out, "tfdata", overwrite=True))
    assert dir_bytes(out) == before  # deterministic: the rerun is the same run
