"""The job end to end on object stores served on loopback (gs:// through
fake-gcs-server, s3:// through moto's server): input, columns, a vocabulary
file and the output on the store; output identical to a local run; the
store's requests and bytes per run; a run killed mid-commit is refused, and a
rerun completes; the tfdata engine and `inspect` on a store load no Beam."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import object_stores
import pytest
import yaml
from beam_probe import beam_loaded
from pipeline_data import COLUMNS_YAML, dir_bytes
from repo_paths import ROOT

from pipeline import driver, numpy_reader, reader
from pipeline.stages import config as config_lib
from pipeline.stages import fileio, publish

pytestmark = pytest.mark.slow


def _columns_with_vocabulary_file() -> tuple[str, str]:
    """The pipeline tests' spec with the genre vocabulary read from a file
    beside it (on the store when the spec is): (spec YAML, vocabulary file)."""
    spec = yaml.safe_load(COLUMNS_YAML)
    (genre,) = [c for c in spec["columns"] if c["kind"] == "indicator"]
    vocabulary = genre["categorical"].pop("vocabulary")
    genre["categorical"].update(kind="vocabulary_file", path="genres.txt")
    return yaml.safe_dump(spec), "".join(f"{v}\n" for v in vocabulary)


STORE_COLUMNS_YAML, GENRES = _columns_with_vocabulary_file()


@pytest.fixture(scope="module")
def local_input(dataset, tmp_path_factory):
    """The pipeline tests' input files, the spec and its vocabulary file."""
    directory = tmp_path_factory.mktemp("store-input")
    for path in dataset["paths"]:
        with open(path, "rb") as f:
            (directory / os.path.basename(path)).write_bytes(f.read())
    (directory / "columns.yaml").write_text(STORE_COLUMNS_YAML)
    (directory / "genres.txt").write_text(GENRES)
    return directory


@pytest.fixture(scope="module")
def local_runs(local_input, tmp_path_factory):
    """engine -> the output directory of a local run."""
    out = {}
    for engine in ("beam", "tfdata"):
        directory = tmp_path_factory.mktemp("local") / "out"
        driver.run(_config(str(local_input), str(directory), engine))
        out[engine] = str(directory)
    return out


def _config(base: str, output: str, engine: str, **kw) -> config_lib.JobConfig:
    return config_lib.JobConfig(
        input_pattern=f"{base}/in-*.tfrecord",
        columns_file=f"{base}/columns.yaml",
        output_dir=output,
        engine=engine,
        batch_size=16,
        num_shards=2,
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def store(object_store, local_input):
    """`object_store` holding the input under `<scheme>://bkt/in`."""
    scheme, base, server = object_store
    object_stores.upload_tree(str(local_input), f"{base}/in")
    return scheme, base, server


def _same_output(remote: str, local: str, remote_in: str, local_in: str) -> None:
    """Shards and embeddings byte for byte; dead letters too, once the input
    paths they name are the same; metadata.json the same but for paths."""
    want = dir_bytes(local)
    got = object_stores.remote_bytes(remote)
    assert sorted(r for r in got if not r.startswith("errors/")) == sorted(
        r for r in want if not r.startswith("errors/") and want[r] is not None
    )
    for rel, data in want.items():
        if rel.startswith(("shards/", "embeddings/")):
            assert got[rel] == data, rel
        elif rel.startswith("errors/"):
            assert got[rel].decode() == data.decode().replace(local_in, remote_in), rel
    md_got, md_want = (
        json.loads(got["metadata.json"]),
        json.loads(want["metadata.json"]),
    )
    for md in (md_got, md_want):
        md.pop("input"), md.pop("columns_file")
        md["files"] = {k: v for k, v in md["files"].items() if "errors/" not in k}
    assert md_got == md_want


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_run_on_store_matches_local_run(store, engine, local_runs, local_input):
    scheme, base, server = store
    output = f"{base}/out-{engine}"
    before = server.logged_requests() if scheme == "gs" else None
    fileio.STATS.reset()
    driver.run(_config(f"{base}/in", output, engine))
    stats = fileio.STATS.snapshot()
    print(f"\n{scheme} {engine}: {fileio.stats_line()}")
    if scheme == "gs":  # the layer counts what the emulator served
        assert server.logged_requests() - before == stats["total_requests"]
    assert stats["bytes_read"] >= sum(os.path.getsize(p) for p in _inputs(local_input))
    _same_output(output, local_runs[engine], f"{base}/in", str(local_input))
    # Read back through the reader (fileio, a tf.data generator), checksums too.
    metadata = reader.load_metadata(output, checksums=True)
    got = [b["sequence_input"].numpy() for b in reader.load_dataset(output)]
    want = [
        b["sequence_input"].numpy() for b in reader.load_dataset(local_runs[engine])
    ]
    assert len(got) == metadata["counts"]["batches"] == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    # The NumPy reader (no TensorFlow) reads the store through fileio as well.
    from_numpy = [b["sequence_input"] for b in numpy_reader.iter_batches(output)]
    assert len(from_numpy) == len(want)
    for a, b in zip(from_numpy, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not fileio.list_files(f"{output}.staging")  # nothing left beside DIR


def _inputs(directory) -> list[str]:
    return sorted(str(p) for p in directory.glob("in-*.tfrecord"))


def _cli(args, env_extra, wrapper: str | None = None):
    env = {**os.environ, **env_extra, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "pipeline", *args]
    if wrapper is not None:
        command = [sys.executable, "-c", wrapper, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


# Runs the CLI with the commit's last step, the metadata.json write, replaced by
# a SIGKILL of the process: the data objects are in DIR, metadata.json is not.
_KILLED_AT_COMMIT_POINT = """
import os, signal, sys
from pipeline.cli.main import main
from pipeline.stages import publish
publish.put_metadata = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
sys.exit(main(sys.argv[1:]))
"""


def test_kill_mid_commit_is_refused_and_a_rerun_completes(
    store, local_input, local_runs, tmp_path
):
    scheme, base, server = store
    output = f"{base}/out-killed"
    args = ["--input", f"{base}/in/in-*.tfrecord", "--columns"]
    args += [f"{base}/in/columns.yaml", "--output", output, "--overwrite"]
    args += ["--batch_size", "16", "--num_shards", "2", "--no_progress"]
    # A previous complete run, by the tfdata engine: the store's client does
    # not bring Beam in.
    tfdata = [*args, "--engine", "tfdata", "-q"]
    assert not beam_loaded(tfdata, tmp_path, server.env)

    killed = _cli([*args, "--engine", "tfdata"], server.env, _KILLED_AT_COMMIT_POINT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = fileio.list_files(output)
    assert "metadata.json" not in left and any(r.startswith("shards/") for r in left)
    with pytest.raises(FileNotFoundError, match="not complete"):
        reader.load_metadata(output)

    # The same command, as a user types it (the emulator named only by the
    # standard variable): it replaces the debris with a complete output.
    rerun = _cli(args, server.env)  # the Beam engine, the default
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "object store:" in rerun.stdout
    print(f"\n{scheme} CLI rerun: {rerun.stdout.strip().splitlines()[-1]}")
    reader.load_metadata(output, checksums=True)
    _same_output(output, local_runs["beam"], f"{base}/in", str(local_input))
    assert not beam_loaded(["inspect", output], tmp_path, server.env)


def test_changed_output_is_refused(store):
    scheme, base, _ = store
    output = f"{base}/out-changed"
    driver.run(_config(f"{base}/in", output, "tfdata"))
    shard = f"{output}/shards/part-00000-of-00002.tfrecord"
    fileio.write_bytes(shard, fileio.read_bytes(shard)[:-1])
    with pytest.raises(publish.IncompleteOutputError, match="part-00000-of-00002"):
        reader.load_metadata(output)


def test_unsupported_scheme_is_refused_before_work(local_input, tmp_path):
    for flag, kw in (
        ("input", {"input_pattern": "hdfs://nn/data/*.tfrecord"}),
        ("output", {"output_dir": "hdfs://nn/out"}),
        ("columns", {"columns_file": "ram://columns.yaml"}),
    ):
        args = {
            "input_pattern": f"{local_input}/in-*.tfrecord",
            "columns_file": f"{local_input}/columns.yaml",
            "output_dir": str(tmp_path / "out"),
            **kw,
        }
        with pytest.raises(ValueError, match=rf"argument `{flag}`.*gs://.*s3://"):
            config_lib.JobConfig(**args)
    assert not os.listdir(tmp_path)
