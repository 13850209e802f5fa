"""Faults: a SIGKILLed run, bundles that fail and are retried, idempotent writes.

* SIGKILL: the job runs as a subprocess and is killed midway (its staging
  directory exists, metadata.json does not); DIR does not exist, or is still the
  previous complete run with --overwrite; a rerun gives the same bytes as an
  uninterrupted run.
* Retries: Beam's in-process FnApiRunner (our default "DirectRunner") does NOT
  retry a failed bundle: the job fails and leaves no DIR. Beam's
  BundleBasedDirectRunner retries a failed bundle (up to 4 attempts, discarding
  the failed attempt's outputs, like Dataflow/Flink/Spark). Failures are injected
  by monkeypatching (no hook in the library): the features DoFn, the validate
  DoFn and the shard writer each fail on their first attempt per element, after
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
import tensorflow as tf
from bad_inputs import CATALOG_YAML, frame, record
from pipeline_data import dir_bytes
from repo_paths import ROOT  # noqa: E402

from pipeline import driver
from pipeline.beam import features as beam_features
from pipeline.beam import validate as beam_validate
from pipeline.beam import write as beam_write
from pipeline.stages import output
from pipeline.stages.config import JobConfig


class _Stats:
    def __init__(self, examples):
        self.examples = examples


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
    """The features and validate DoFns fail on the first attempt of every bundle
    (after emitting outputs), the shard writer after writing shard 0."""
    markers = str(tmp_path / "markers")
    os.mkdir(markers)
    write_shard = beam_write._write_shard

    def make_flaky(cls, kind, key_of):
        process, start = cls.process, cls.start_bundle

        def start_bundle(self):
            start(self)
            self._first_of_bundle = True

        def flaky_process(self, element):
            first, self._first_of_bundle = self._first_of_bundle, False
            yield from process(self, element)  # outputs emitted, then...
            if first and _first_attempt(markers, kind, key_of(element)):
                raise RuntimeError(f"injected: {kind} bundle lost")

        monkeypatch.setattr(cls, "start_bundle", start_bundle)
        monkeypatch.setattr(cls, "process", flaky_process)

    make_flaky(beam_features._FeaturesDoFn, "features", lambda item: item[0])
    make_flaky(beam_validate._ValidateDoFn, "validate", lambda chunk: chunk[0][0])

    def write_shard_flaky(item, directory, n):
        info = write_shard(item, directory, n)  # the file is written...
        if item[0] == 0 and _first_attempt(markers, "shard", item[0]):
            raise RuntimeError("injected: worker died after writing its shard")
        return info

    monkeypatch.setattr(beam_write, "_write_shard", write_shard_flaky)
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
    run(dataset, out)
    return out


def test_retried_bundles_yield_each_example_exactly_once(
    dataset, clean_run, flaky, tmp_path
):
    out = tmp_path / "out"
    result = run(dataset, out, runner="BundleBasedDirectRunner")
    injected = os.listdir(flaky)
    kinds = {name.split("-")[0] for name in injected if not name.endswith(".retried")}
    assert kinds == {"features", "validate", "shard"}  # every kind failed once...
    failed = [n for n in injected if not n.endswith(".retried")]
    retried = [n for n in injected if n.endswith(".retried")]
    assert len(retried) == len(failed) >= 3  # ...and every failed call was retried
    counts = result.metadata["counts"]
    assert counts["examples_written"] == len(dataset["good"])
    assert counts["examples_written"] + counts["errors_total"] == counts["examples_in"]
    # Same bytes as the clean FnApiRunner run: no duplicate, no missing example,
    # no stray temporary file, the same deterministic shard names.
    assert dir_bytes(out) == dir_bytes(clean_run)


def test_the_default_runner_does_not_retry_and_leaves_no_output(
    dataset, flaky, tmp_path
):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="injected"):
        run(dataset, out)  # FnApiRunner: the first failure ends the job
    assert not any(n.endswith(".retried") for n in os.listdir(flaky))
    assert not out.exists() and not glob.glob(f"{out}.staging-*")


def _write_pieces(batches, directory, compression="none"):
    """The pieces DoFn over one bundle of `batches`: their references."""
    do_fn = beam_write._WritePiecesDoFn(directory, compression)
    do_fn.start_bundle()
    pieces = [piece for batch in batches for piece in do_fn.process(batch)]
    do_fn.finish_bundle()
    return pieces


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_rewriting_pieces_and_shards_is_idempotent(tmp_path, compression):
    (tmp_path / "shards").mkdir()
    (tmp_path / output.PIECES_DIR).mkdir()
    batches = [((0, 0, 0, i), b"record-%d" % i, _Stats(2)) for i in (2, 0, 1)]
    pieces = _write_pieces(batches, str(tmp_path), compression)
    retried = _write_pieces(batches, str(tmp_path), compression)  # a retried bundle
    files = {path for _, _, (path, _, _) in pieces}
    # Uncompressed: one file per bundle attempt, a byte range per batch.
    assert len(files) == (1 if compression == "none" else 3)
    (shard,) = [s for s in beam_write._shard_pieces(pieces, 1)]
    first = beam_write._write_shard(shard, str(tmp_path), 1)
    path = tmp_path / "shards" / "part-00000-of-00001.tfrecord"
    data = path.read_bytes()
    (path.parent / ".part-00000-of-00001.tfrecord.tmp-dead").write_bytes(b"partial")
    assert beam_write._write_shard(shard, str(tmp_path), 1) == first  # a retry
    assert path.read_bytes() == data
    (retried_shard,) = [s for s in beam_write._shard_pieces(retried, 1)]
    assert beam_write._write_shard(retried_shard, str(tmp_path), 1) == first
    assert path.read_bytes() == data  # from the retried bundle's pieces: the same
    assert first == (
        0,
        {"file": "shards/part-00000-of-00001.tfrecord", "batches": 3, "examples": 6},
    )
    kind = "GZIP" if compression == "gzip" else None
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path), kind)]
    assert records == [b"record-0", b"record-1", b"record-2"]  # in key order


def test_pieces_go_to_shards_round_robin_in_key_order():
    pieces = [((0, 0, 0, i), 1, ("p", 10 * i, 10)) for i in (3, 1, 4, 0, 2)]
    pieces.sort(key=lambda p: p[0])
    shards = dict(beam_write._shard_pieces(pieces[::-1], 2))
    assert shards == {0: [pieces[0], pieces[2], pieces[4]], 1: [pieces[1], pieces[3]]}
    assert dict(beam_write._shard_pieces([], 2)) == {0: [], 1: []}  # empty shards too


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


def test_concatenate_copies_byte_ranges_in_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"0123456789")
    b.write_bytes(b"abcdef")
    ranges = [(str(b), 2, 3), (str(a), 0, None), (str(a), 8, 2), (str(b), 0, 0)]
    # gs:// and s3:// (pipeline.stages.fileio): the Beam runs of
    # test_driver_object_store.py write their shards with concatenate; other
    # schemes are refused.
    with pytest.raises(ValueError, match="gs://BUCKET"):
        beam_write.concatenate(ranges, "ram://seqshards-test/out")
    out = str(tmp_path / "out")
    beam_write.concatenate(ranges, out)
    with tf.io.gfile.GFile(out, "rb") as f:
        assert f.read() == b"cde" + b"0123456789" + b"89"
    beam_write.concatenate([], out + "-empty")  # (shards go to new temporary names)
    assert tf.io.gfile.GFile(out + "-empty", "rb").read() == b""
