"""load_dataset on a hand-written output directory (VarLen context -> ragged)."""

import json

import numpy as np
import tensorflow as tf

import pipeline
from pipeline.stages import batch_format, metadata, output


def test_load_dataset_decodes_records_and_ragged_context(tmp_path):
    (tmp_path / "shards").mkdir()
    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    record = batch_format.encode_batch(
        x,
        np.array([3, 1]),
        {
            "tags": (np.array([b"a", b"b", b"c"], object), np.array([1, 2])),
            "score": (np.array([0.5, 1.5], np.float32), None),
        },
        [b"i0", b"i1"],
    )
    output.write_records(
        str(tmp_path / "shards" / "part-00000-of-00001.tfrecord"), [record]
    )
    md = {
        "version": metadata.FORMAT_VERSION,
        "feature_dim": 2,
        "shards": [{"file": "shards/part-00000-of-00001.tfrecord"}],
        "context": {
            "tags": {"kind": "var_len", "dtype": "string"},
            "score": {"kind": "fixed_len", "dtype": "float32", "shape": []},
        },
    }
    (tmp_path / "metadata.json").write_text(json.dumps(md))
    ds = pipeline.load_dataset(str(tmp_path))
    assert ds.element_spec["sequence_input"].shape.as_list() == [None, None, 2]
    assert isinstance(ds.element_spec["tags"], tf.RaggedTensorSpec)
    (batch,) = list(ds)
    np.testing.assert_array_equal(batch["sequence_input"].numpy(), x)
    assert batch["sequence_length"].numpy().tolist() == [3, 1]
    assert batch["tags"].to_list() == [[b"a"], [b"b", b"c"]]
    np.testing.assert_allclose(batch["score"].numpy(), [0.5, 1.5])
