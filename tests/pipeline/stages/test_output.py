"""Atomic output: staging + rename, --overwrite semantics, refusals before work."""

import glob
import json
import os

import google_crc32c
import numpy as np
import pytest
import tensorflow as tf
from pipeline_data import BATCH_SIZE

from pipeline import driver
from pipeline.stages import features, output
from pipeline.stages.config import JobConfig


def config(dataset, out, **kw):
    kw.setdefault("progress", False)
    return JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=str(out),
        columns_file=dataset["columns"],
        batch_size=BATCH_SIZE,
        **kw,
    )


def leftovers(out):
    return glob.glob(f"{out}.staging-*") + glob.glob(f"{out}.old-*")


@pytest.fixture
def failing_features(monkeypatch):
    """Makes the features stage raise from its 3rd batch on (midway through a
    run; a runner that retries bundles fails too)."""
    calls = {"n": 0}
    original = features.FeatureComputer.batch_record

    original_pieces = features.FeatureComputer.record_pieces  # the tfdata engine's

    def fail_third():
        calls["n"] += 1
        if calls["n"] >= 3:  # and after: a retried bundle fails again
            raise RuntimeError("injected failure")

    def batch_record(self, members):
        fail_third()
        return original(self, members)

    def record_pieces(self, *args):
        fail_third()
        return original_pieces(self, *args)

    monkeypatch.setattr(features.FeatureComputer, "batch_record", batch_record)
    monkeypatch.setattr(features.FeatureComputer, "record_pieces", record_pieces)
    return calls


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_failed_run_leaves_no_output_dir(engine, dataset, tmp_path, failing_features):
    out = tmp_path / "out"
    with pytest.raises(Exception, match="injected failure"):
        driver.run(config(dataset, out, engine=engine))
    assert failing_features["n"] >= 3
    assert not out.exists() and leftovers(out) == []


def test_failed_overwrite_keeps_the_previous_run(dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    driver.run(config(dataset, out, engine="tfdata"))
    before = {
        p: open(p, "rb").read() for p in glob.glob(f"{out}/**/*.*", recursive=True)
    }
    monkeypatch.setattr(
        features.FeatureComputer,
        "record_pieces",
        lambda self, *a: (_ for _ in ()).throw(RuntimeError("injected")),
    )
    with pytest.raises(RuntimeError, match="injected"):
        driver.run(config(dataset, out, engine="tfdata", overwrite=True))
    after = {
        p: open(p, "rb").read() for p in glob.glob(f"{out}/**/*.*", recursive=True)
    }
    assert after == before and leftovers(out) == []


def test_non_empty_dir_refused_without_overwrite(dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        driver.run(config(dataset, out))
    assert (out / "keep.txt").read_text() == "precious" and leftovers(out) == []


def test_overwrite_replaces_the_whole_dir(dataset, tmp_path):
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)  # a stale shard of an older run of ours
    (out / "shards" / "part-00007-of-00009.tfrecord").write_bytes(b"old")
    result = driver.run(config(dataset, out, engine="tfdata", overwrite=True))
    assert not (out / "shards" / "part-00007-of-00009.tfrecord").exists()
    assert (out / output.METADATA_FILE).exists()
    assert result.metadata["counts"]["examples_written"] > 0
    assert leftovers(out) == []


def test_empty_existing_dir_is_fine(dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    driver.run(config(dataset, out, engine="tfdata", num_shards=3))
    shards = sorted(os.listdir(out / "shards"))
    assert shards == [f"part-{i:05d}-of-00003.tfrecord" for i in range(3)]


def test_output_path_that_is_a_file_is_refused(dataset, tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    with pytest.raises(FileExistsError, match="existing file"):
        driver.run(config(dataset, out, overwrite=True))


def test_missing_input_and_columns(dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="no file matches"):
        driver.run(
            JobConfig(
                input_pattern=str(tmp_path / "none-*"),
                output_dir=str(tmp_path / "o"),
                columns_file=dataset["columns"],
            )
        )
    with pytest.raises(FileNotFoundError, match="columns"):
        driver.run(
            JobConfig(
                input_pattern=dataset["pattern"],
                output_dir=str(tmp_path / "o"),
                columns_file=str(tmp_path / "nope.py"),
            )
        )
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_input_without_a_valid_record(engine, dataset, tmp_path):
    from pipeline_data import bad_records, frame

    (tmp_path / "bad.tfrecord").write_bytes(
        b"".join(frame(r) for r in bad_records().values())
    )
    out = tmp_path / "out"
    result = driver.run(
        JobConfig(
            input_pattern=str(tmp_path / "bad.tfrecord"),
            output_dir=str(out),
            columns_file=dataset["columns"],
            engine=engine,
            progress=False,
        )
    )
    counts = result.metadata["counts"]
    assert counts["examples_written"] == 0 and counts["batches"] == 0
    assert counts["errors_total"] == counts["examples_in"] == len(bad_records())
    assert os.listdir(out / "shards") == ["part-00000-of-00001.tfrecord"]
    assert os.path.getsize(out / "shards" / "part-00000-of-00001.tfrecord") == 0


def _examples(directory):
    from pipeline import reader

    rows = {}
    for batch in reader.load_dataset(str(directory)):
        x, lengths = batch["sequence_input"].numpy(), batch["sequence_length"].numpy()
        ids = batch["id"].numpy()
        for i, n in enumerate(lengths.tolist()):
            rows[bytes(ids[i])] = x[i, :n].tobytes()
    return rows


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_gzip_shards_hold_the_same_batches(engine, dataset, tmp_path):
    import tensorflow as tf

    plain, gz = tmp_path / "plain", tmp_path / "gz"
    driver.run(config(dataset, plain, engine=engine, num_shards=3))
    md = driver.run(
        config(dataset, gz, engine=engine, num_shards=3, compression="gzip")
    )
    assert md.metadata["compression"] == "gzip"
    assert "compression" not in json.loads((plain / "metadata.json").read_text())
    for name in sorted(os.listdir(plain / "shards")):
        records = list(tf.data.TFRecordDataset(str(plain / "shards" / name)))
        zipped = list(
            tf.data.TFRecordDataset(str(gz / "shards" / name), compression_type="GZIP")
        )
        assert [r.numpy() for r in zipped] == [r.numpy() for r in records]
    assert _examples(gz) == _examples(plain) and len(_examples(gz)) > 0


def test_compression_is_checked():
    with pytest.raises(ValueError, match="compression"):
        JobConfig(
            input_pattern="x", output_dir="o", columns_file="c", compression="zip"
        )


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_record_writer_writes_records_given_as_pieces(tmp_path, compression):
    """Pieces of any kind and number (more than one writev takes, empty ones,
    numpy views) make the same TFRecords as the joined bytes."""
    rng = np.random.default_rng(0)
    rows = rng.random((3000, 3)).astype(np.float32)
    records = [
        [b"head", rows[:10], b"", rows[10:11]],
        [rows[i : i + 1] for i in range(1500)] + [b"tail"],  # > 1024 buffers
        [b""],
    ]
    path = str(tmp_path / "out.tfrecord")
    writer = output.RecordWriter(path, compression)
    for pieces in records:
        writer.write(pieces)
    writer.close()
    kind = "GZIP" if compression == "gzip" else ""
    got = list(tf.data.TFRecordDataset(path, kind).as_numpy_iterator())
    assert got == [b"".join(bytes(memoryview(p).cast("B")) for p in r) for r in records]
    if compression == "none":  # the file's CRC32C, combined record by record
        with open(path, "rb") as f:
            data = f.read()
        assert writer.checksum() == (len(data), f"{google_crc32c.value(data):08x}")


def test_record_writer_survives_short_writes(tmp_path, monkeypatch):
    """`os.writev` may write fewer bytes than asked (signals, pipes, full
    disks retried): the writer goes on from the first byte not written."""
    real_writev = os.writev

    def short_writev(fd, buffers):  # at most 7 bytes a call
        data = b"".join(bytes(memoryview(b).cast("B")) for b in buffers)[:7]
        return real_writev(fd, [data])

    monkeypatch.setattr(os, "writev", short_writev)
    rows = np.arange(60, dtype=np.float32).reshape(20, 3)
    records = [[b"head", rows[:5], b"", rows[5:]], [b"x" * 100]]
    path = str(tmp_path / "out.tfrecord")
    writer = output.RecordWriter(path)
    sizes = [writer.write(pieces) for pieces in records]
    writer.close()
    got = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert got == [b"".join(bytes(memoryview(p).cast("B")) for p in r) for r in records]
    assert sum(sizes) == os.path.getsize(path)
