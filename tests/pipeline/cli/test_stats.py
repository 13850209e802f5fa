"""`seqshards stats`: lengths, presence, bucket choices; the batching simulation."""

import collections
import glob
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf.message import DecodeError
from repo_paths import ROOT  # noqa: E402

from pipeline.cli import stats
from pipeline.cli.main import main
from pipeline.stages import bucket, config, tfrecord

SAMPLE = os.path.join(ROOT, "data", "sample-*.tfrecord")
SAMPLE_COLUMNS = os.path.join(ROOT, "data", "columns.yaml")


def _proto_facts(pattern):
    """Lengths (rating steps) and presence counted straight from the protos."""
    lengths, lists, context, protos = (
        [],
        collections.Counter(),
        collections.Counter(),
        0,
    )
    for i, path in enumerate(sorted(glob.glob(pattern))):
        for records, _ in tfrecord.read_file(path, i):  # framing damage skipped
            for _, data in records:
                try:
                    ex = tf.train.SequenceExample.FromString(data)
                except DecodeError:
                    continue
                protos += 1
                lists.update(ex.feature_lists.feature_list.keys())
                context.update(ex.context.feature.keys())
                lengths.append(len(ex.feature_lists.feature_list["rating"].feature))
    return np.asarray(lengths), lists, context, protos


def test_length_summary_is_observed_lengths():
    s = stats.length_summary(np.arange(1, 101))
    assert s == {
        "count": 100,
        "min": 1,
        "p50": 50,
        "p90": 90,
        "p99": 99,
        "max": 100,
        "mean": 50.5,
    }
    assert stats.length_summary(np.asarray([3, 1, 2, 2]))["p50"] == 2
    assert stats.length_summary(np.zeros(0)) == {"count": 0}


def test_bucket_range_and_powers_of_two():
    assert [bucket.bucket_range((3, 4, 8), b) for b in range(4)] == [
        "1-3",
        "4",
        "5-8",
        "9+",
    ]
    assert bucket.bucket_range((), 0) == "1+"
    assert stats.powers_of_two(40) == (4, 8, 16, 32)
    assert stats.powers_of_two(3) == ()


def test_stats_on_the_sample_prints_its_distribution(tmp_path, capsys):
    lengths, lists, context, protos = _proto_facts(SAMPLE)
    plot = tmp_path / "s.png"
    assert (
        main(
            [
                "stats",
                "--input",
                SAMPLE,
                "--columns",
                SAMPLE_COLUMNS,
                "--output_plot",
                str(plot),
                "-q",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    expected = [
        len(lengths),
        lengths.min(),
        *(int(np.percentile(lengths, q, method="inverted_cdf")) for q in (50, 90, 99)),
        lengths.max(),
    ]
    row = out.split("count     min  median     p90     p99     max     mean\n")[1]
    numbers = [int(v.replace(",", "")) for v in row.split()[:6]]
    assert numbers == expected
    assert expected[:3] == [2400, 1, 12]  # the sample's known shape
    assert f"{lengths.mean():.1f}" in row.splitlines()[0]
    assert protos == 2400
    for key in ("rating", "watches", "genre"):
        assert lists[key] == protos
        assert re.search(rf"feature list +{key} +100\.0% +2,400\n", out)
    for key in ("id", "label"):
        assert context[key] == protos
        assert re.search(rf"context +{key} +100\.0% +2,400\n", out)
    hist = collections.Counter(lengths.tolist())
    auto = bucket.make_plan(hist, "auto", 64).boundaries
    assert f"auto: --bucket_boundaries {','.join(map(str, auto))}\n" in out
    for name in ("none", "auto", "powers of two", "reference"):
        assert re.search(rf"\n  {name} +\d+ +\d+ +0\.\d{{4}} ", out)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stats_counts_presence_and_dead_letters(dataset, tmp_path, capsys):
    assert (
        main(
            [
                "stats",
                "--input",
                dataset["pattern"],
                "--columns",
                dataset["columns"],
                "--batch_size",
                "16",
                "--no_plot",
                "--bucket_boundaries",
                "5,10,20",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    _, lists, context, protos = _proto_facts(dataset["pattern"])
    assert f"seqshards stats: {dataset['examples_in']:,} records from 3 file(s)" in out
    assert re.search(rf"valid {len(dataset['good']):,}, dead letters 13 \(", out)
    assert "corrupt_record=1" in out and "missing_feature=3" in out
    assert f"(share of {protos:,} SequenceExamples)" in out
    share = lists["watches"] / protos
    assert re.search(
        rf"feature list +watches +{100 * share:.1f}% +{lists['watches']:,}\n", out
    )
    assert lists["watches"] < protos and context["label"] < protos
    assert re.search(r"\n  yours +4 +\d+ ", out)
    assert not os.path.exists(tmp_path / "stats.png")


def test_sample_reads_the_first_records_of_each_file(dataset):
    spec = config.load_columns(dataset["columns"])
    files = tfrecord.match_files(dataset["pattern"])
    s = stats.collect(files, spec, sample=30)
    assert s.sampled and s.records == 30
    assert sorted({p[0] for p in s.positions}) == [0, 1, 2]
    assert max(p[1] for p in s.positions if p[0] == 0) == 9


@pytest.mark.parametrize(
    "batch_size, boundaries",
    [(16, "auto"), (2, (10,))],  # (2, (10,)): buckets spread over sub-keys
)
def test_simulated_batches_equal_the_beam_job(
    dataset, tmp_path, batch_size, boundaries
):
    from pipeline import driver, reader
    from pipeline.cli import inspect_output

    out = str(tmp_path / "o")
    cfg = config.JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=out,
        columns_file=dataset["columns"],
        batch_size=batch_size,
        bucket_boundaries=boundaries,
        progress=False,
    )
    md = driver.run(cfg).metadata
    spec = config.load_columns(dataset["columns"])
    s = stats.collect(tfrecord.match_files(dataset["pattern"]), spec)
    auto = boundaries == "auto"
    choices = stats.compare_choices(s, batch_size, None if auto else boundaries)
    choice = {c.name: c for c in choices}["auto" if auto else "yours"]
    plan = bucket.make_plan(s.histogram, boundaries, batch_size)
    if boundaries != "auto":
        assert max(plan.subkeys) > 1
    assert tuple(md["bucket_boundaries"]) == choice.boundaries
    counts = md["counts"]
    assert (choice.batches, choice.real_steps, choice.padded_steps) == (
        counts["batches"],
        counts["real_steps"],
        counts["padded_steps"],
    )
    scanned = inspect_output.scan(out, reader.load_metadata(out))
    per_bucket = {
        b.bucket: (b.batches, b.examples, b.real_steps, b.real_steps + b.padded_steps)
        for b in choice.buckets
    }
    assert per_bucket == {
        r.bucket: (r.batches, r.examples, r.real_steps, r.total_steps)
        for r in scanned.buckets.values()
    }
