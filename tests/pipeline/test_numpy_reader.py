"""`pipeline.iter_batches`: load_dataset's values with NumPy only (numpy_reader.py)."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from pipeline_data import COLUMNS_YAML, run_job
from repo_paths import ROOT

import pipeline
from pipeline import numpy_reader

# The fixture's columns, with `label` read as a var_len context feature too.
VAR_LEN_YAML = COLUMNS_YAML.replace(
    "label: {dtype: int64}", "label: {dtype: int64, kind: var_len}"
)


def _run(dataset, out, columns, **options):
    run_job(dict(dataset, columns=columns), out, "tfdata", **options)
    return str(out)


@pytest.fixture(scope="module")
def outputs(dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("numpy_reader")
    var_len = tmp / "var_len.yaml"
    var_len.write_text(VAR_LEN_YAML)
    return {
        # More shards than load_dataset's interleave cycle (4), gzip.
        "six_gzip": _run(
            dataset, tmp / "six", dataset["columns"], num_shards=6, compression="gzip"
        ),
        "static_var_len": _run(
            dataset,
            tmp / "static",
            str(var_len),
            num_shards=2,
            static_shapes=True,
            max_buckets=3,
        ),
    }


def _tf_batches(directory):
    out = []
    for batch in pipeline.load_dataset(directory):
        out.append(
            {
                k: v.to_list() if hasattr(v, "to_list") else v.numpy()
                for k, v in batch.items()
            }
        )
    return out


def _assert_same(numpy_batches, tf_batches):
    assert len(numpy_batches) == len(tf_batches) > 0
    for ours, theirs in zip(numpy_batches, tf_batches, strict=True):
        assert ours.keys() == theirs.keys()
        for key, value in ours.items():
            if isinstance(value, list):  # var_len: one array per example
                assert [v.tolist() for v in value] == theirs[key], key
            else:
                assert value.dtype == theirs[key].dtype, key
                np.testing.assert_array_equal(value, theirs[key], err_msg=key)


@pytest.mark.parametrize("name", ["six_gzip", "static_var_len"])
def test_iter_batches_imports_neither_tensorflow_nor_beam(outputs, name, tmp_path):
    dump = tmp_path / "batches.pkl"
    code = (
        "import pickle, sys\n"
        "import pipeline\n"
        f"batches = list(pipeline.iter_batches({outputs[name]!r}))\n"
        "loaded = [m for m in ('tensorflow', 'apache_beam') if m in sys.modules]\n"
        f"pickle.dump((batches, loaded), open({str(dump)!r}, 'wb'))\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(dump, "rb") as f:
        batches, loaded = pickle.load(f)
    assert loaded == []
    _assert_same(batches, _tf_batches(outputs[name]))


def test_iter_batches_shuffles_batches_by_seed(outputs):
    directory = outputs["six_gzip"]
    plain = list(numpy_reader.iter_batches(directory))

    def ids(batches):
        return [tuple(b["id"].tolist()) for b in batches]

    first = ids(numpy_reader.iter_batches(directory, shuffle=True, seed=1))
    again = ids(pipeline.iter_batches(directory, shuffle=True, seed=1))
    other = ids(numpy_reader.iter_batches(directory, shuffle=True, seed=2))
    assert first == again and first != ids(plain) and first != other
    assert sorted(first) == sorted(ids(plain))


def test_a_damaged_shard_fails_its_crc_naming_the_file(outputs, tmp_path):
    src = outputs["static_var_len"]
    md = numpy_reader.read_metadata(src)
    shard = os.path.join(src, md["shards"][0]["file"])
    damaged = tmp_path / "damaged.tfrecord"
    data = bytearray(open(shard, "rb").read())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(numpy_reader.ShardError, match="damaged.tfrecord.*CRC"):
        list(numpy_reader.iter_records(str(damaged)))
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(open(shard, "rb").read()[:-3])
    with pytest.raises(numpy_reader.ShardError, match="cut short"):
        list(numpy_reader.iter_records(str(cut)))


def test_missing_metadata_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        list(numpy_reader.iter_batches(str(tmp_path)))
