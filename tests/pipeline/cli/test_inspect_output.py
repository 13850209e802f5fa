"""`seqshards inspect DIR`: counts, dead letters, bucket table, layout, first batch."""

import collections
import glob
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from pipeline import driver
from pipeline.cli.main import main
from pipeline.stages import config


@pytest.fixture(scope="module")
def run_dir(dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("inspect") / "out")
    cfg = config.JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=out,
        columns_file=dataset["columns"],
        batch_size=16,
        num_shards=2,
        engine="tfdata",
        progress=False,
    )
    return out, driver.run(cfg).metadata


def _table_from_shards(out, boundaries):
    """bucket -> [batches, examples, real, B*T, sum T], parsed without pipeline."""
    spec = {
        "shape": tf.io.FixedLenFeature([3], tf.int64),
        "sequence_length": tf.io.VarLenFeature(tf.int64),
    }
    rows = collections.defaultdict(lambda: [0, 0, 0, 0, 0])
    for path in sorted(glob.glob(f"{out}/shards/*.tfrecord")):
        for record in tf.data.TFRecordDataset(path):
            ex = tf.io.parse_single_example(record, spec)
            b, t, _ = ex["shape"].numpy().tolist()
            n = tf.sparse.to_dense(ex["sequence_length"]).numpy()
            bid = int(np.searchsorted(boundaries, n.max(), side="left"))
            for i, v in enumerate((1, b, int(n.sum()), b * t, t)):
                rows[bid][i] += v
    return dict(sorted(rows.items()))


def test_inspect_prints_what_the_run_wrote(run_dir, capsys):
    out, md = run_dir
    assert main(["inspect", out]) == 0
    text = capsys.readouterr().out
    c = md["counts"]
    assert re.search(rf"examples in +{c['examples_in']:,} +from 3 file\(s\)", text)
    assert re.search(
        rf"examples written +{c['examples_written']:,} +in {c['batches']} batches, "
        r"2 shard\(s\)",
        text,
    )
    assert re.search(rf"dead letters +{c['errors_total']}\n", text)
    # Dead letters: every reason with its count, first positions and detail.
    assert c["errors"]["missing_feature"] == 3
    for reason, n in c["errors"].items():
        fi, ri = c["error_positions"][reason][0]
        name = os.path.basename(md["input"]["files"][fi]["path"])
        assert re.search(rf"\n  {reason} +{n} +{re.escape(name)}:{ri}\b", text)
    assert "first: feature list(s) ['watches'] missing" in text
    # Bucket table: recomputed independently from the shard records.
    boundaries = md["bucket_boundaries"]
    expected = _table_from_shards(out, boundaries)
    for bid, (batches, examples, real, total, sum_t) in expected.items():
        lengths = re.escape(_range(boundaries, bid))
        row = (
            rf"\n +{bid} +{lengths} +{batches} +{examples} +"
            rf"{sum_t / batches:.1f} +{real / total:.4f}\n"
        )
        assert re.search(row, text), row
    assert sum(v[1] for v in expected.values()) == c["examples_written"]
    assert re.search(
        rf"total +{c['batches']} +[\d,]+ +[\d.]+ +[\d.]+ += metadata", text
    )
    # Column layout and first batch.
    for col in md["columns"]:
        assert re.search(rf"\n  {col['name']} +{col['offset']} +{col['width']}\n", text)
    d = md["feature_dim"]
    assert d == 9
    assert re.search(rf"sequence_input +float32 +\[16, \d+, {d}\]", text)
    assert re.search(r"sequence_length +int64 +\[16\]", text)
    assert re.search(r"label +int64 +\[16\]", text)


def _range(boundaries, b):
    low = boundaries[b - 1] + 1 if b else 1
    if b == len(boundaries):
        return f"{low}+"
    return str(low) if boundaries[b] == low else f"{low}-{boundaries[b]}"


def test_inspect_plot(run_dir, tmp_path, capsys):
    out, _ = run_dir
    path = tmp_path / "i.png"
    assert main(["inspect", out, "--output_plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {path}" in capsys.readouterr().out


def test_inspect_refuses_a_directory_without_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        main(["inspect", str(tmp_path)])


def test_load_dataset_knows_its_number_of_batches(run_dir):
    import pipeline

    out, md = run_dir
    ds = pipeline.load_dataset(out, shuffle_batches=True, seed=1)
    assert int(ds.cardinality()) == md["counts"]["batches"] == sum(1 for _ in ds)
