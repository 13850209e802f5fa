"""End to end: both engines on a small dataset with every bad-input kind."""

import base64
import collections
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from pipeline_data import BATCH_SIZE, EXPECTED_REASON, GENRES, NUM_IDS, dir_bytes
from pipeline_data import run_job as run

import pipeline
from pipeline.beam import runner
from pipeline.stages import bucket

NUM_EXPECTED_ERRORS = len(EXPECTED_REASON) + 2  # + corrupt + truncated


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {
        "beam": run(dataset, base / "beam"),
        "tfdata": run(dataset, base / "tfdata", engine="tfdata"),
        "base": base,
    }


def batches_of(directory):
    ds = pipeline.load_dataset(str(directory))
    return [
        {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in b.items()} for b in ds
    ]


@pytest.fixture(scope="module")
def reference(runs):
    """tf_keras SequenceFeatures on tf.feature_column columns, same embedding table."""
    import tf_keras

    fc = tf.feature_column
    table = np.load(f"{runs['base']}/beam/embeddings/watches_embedding.npy")
    columns = [
        fc.sequence_numeric_column("rating"),
        fc.embedding_column(
            fc.sequence_categorical_column_with_identity("watches", NUM_IDS),
            4,
            initializer=tf.constant_initializer(table),
        ),
        fc.indicator_column(
            fc.sequence_categorical_column_with_vocabulary_list(
                "genre", [g.decode() for g in GENRES]
            )
        ),
    ]
    layer = tf_keras.experimental.SequenceFeatures(columns)
    spec = fc.make_parse_example_spec(columns)

    def apply(serialized: bytes):
        _, seq, _ = tf.io.parse_sequence_example([serialized], sequence_features=spec)
        x, length = layer(seq)
        return x.numpy()[0], int(length.numpy()[0])

    return apply


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_rows_equal_the_tf_keras_reference(engine, runs, dataset, reference):
    md = runs[engine].metadata
    assert md["feature_dim"] == 1 + 4 + 4
    seen = set()
    for batch in batches_of(runs["base"] / engine):
        x, lengths, ids = batch["sequence_input"], batch["sequence_length"], batch["id"]
        assert x.dtype == np.float32 and x.shape[1] == lengths.max()
        for row, length, ident in zip(x, lengths, ids, strict=True):
            want, want_length = reference(dataset["good"][ident])
            assert length == want_length
            np.testing.assert_allclose(
                row[:length], want[:length], rtol=1e-6, atol=1e-6
            )
            assert not row[length:].any()  # padding is zero
            seen.add(ident)
    assert seen == set(dataset["good"])  # every good example exactly once


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_accounting_is_exact(engine, runs, dataset):
    counts = runs[engine].metadata["counts"]
    assert counts["examples_in"] == dataset["examples_in"]
    assert counts["examples_written"] == len(dataset["good"])
    assert counts["errors_total"] == NUM_EXPECTED_ERRORS
    assert counts["examples_written"] + counts["errors_total"] == counts["examples_in"]
    expected = collections.Counter(EXPECTED_REASON.values())
    expected.update(["corrupt_record", "truncated_record"])
    assert counts["errors"] == dict(expected)


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_every_bad_kind_lands_in_errors_with_its_reason(engine, runs, dataset):
    out = runs["base"] / engine
    entries = {}
    for path in glob.glob(f"{out}/errors/*.jsonl"):
        for line in open(path):
            e = json.loads(line)
            assert os.path.basename(path) == f"{e['reason']}.jsonl"
            entries[(os.path.basename(e["file"]), e["record_index"])] = e
    from pipeline_data import bad_records

    for name, (file_index, index) in dataset["bad_positions"].items():
        e = entries[(f"in-{file_index:05d}.tfrecord", index)]
        assert e["reason"] == EXPECTED_REASON[name], name
        assert base64.b64decode(e["data_b64"]) == bad_records()[name]
        assert e["detail"]
    f, i = dataset["corrupt_position"]
    assert entries[(f"in-{f:05d}.tfrecord", i)]["reason"] == "corrupt_record"
    f, i = dataset["truncated_position"]
    assert entries[(f"in-{f:05d}.tfrecord", i)]["reason"] == "truncated_record"
    md = runs[engine].metadata
    assert md["counts"]["error_positions"]["corrupt_record"] == [
        list(dataset["corrupt_position"])
    ]


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_batches_stay_in_one_bucket_and_only_one_short_per_bucket(engine, runs):
    md = runs[engine].metadata
    bounds = md["bucket_boundaries"]
    assert bounds  # auto found more than one bucket on this data
    short = collections.Counter()
    total_real = total_padded = 0
    for batch in batches_of(runs["base"] / engine):
        lengths = batch["sequence_length"]
        ids = set(bucket.assign_buckets(lengths, bounds).tolist())
        assert len(ids) == 1
        if len(lengths) < BATCH_SIZE:
            short[ids.pop()] += 1
        total_real += int(lengths.sum())
        total_padded += len(lengths) * int(lengths.max())
    assert max(short.values()) == 1
    assert md["counts"]["real_steps"] == total_real
    assert md["padding_efficiency"] == pytest.approx(
        total_real / total_padded, abs=1e-6
    )
    assert md["padding_efficiency"] >= md["estimated_padding_efficiency"] - 1e-6


def test_beam_metrics_counters_are_exact(runs, dataset):
    from apache_beam.metrics.metric import MetricsFilter

    result = (
        runs["beam"]
        .pipeline_result.metrics()
        .query(MetricsFilter().with_namespace("seqshards"))
    )
    counters = collections.Counter()
    for c in result["counters"]:
        counters[c.key.metric.name] += c.committed
    md = runs["beam"].metadata["counts"]
    expected = {
        "records_read": dataset["examples_in"],
        "records_written": len(dataset["good"]),
        "batches": md["batches"],
        "padding_steps": md["padded_steps"],
    }
    for reason, n in md["errors"].items():
        expected[f"errors_{reason}"] = n
    assert dict(counters) == expected


def test_metadata_and_reader(runs):
    directory = runs["base"] / "beam"
    md = pipeline.load_metadata(str(directory))
    assert md == runs["beam"].metadata
    assert (
        md["version"] == 1 and md["engine"] == "beam" and md["batch_size"] == BATCH_SIZE
    )
    assert [c["name"] for c in md["columns"]] == [
        "genre_indicator",
        "rating",
        "watches_embedding",
    ]
    assert md["embeddings"] == {"watches_embedding": "embeddings/watches_embedding.npy"}
    assert md["id_feature"] == "id"
    assert sum(s["examples"] for s in md["shards"]) == md["counts"]["examples_written"]
    ds = pipeline.load_dataset(str(directory))
    spec = ds.element_spec
    assert spec["sequence_input"].shape.as_list() == [None, None, md["feature_dim"]]
    assert spec["sequence_input"].dtype == tf.float32
    assert spec["sequence_length"].shape.as_list() == [None]
    assert spec["sequence_length"].dtype == tf.int64
    assert spec["label"].shape.as_list() == [None] and spec["id"].dtype == tf.string
    shuffled = pipeline.load_dataset(str(directory), shuffle_batches=True, seed=3)
    assert sum(int(b["sequence_length"].shape[0]) for b in shuffled) == len(
        set().union(*[set(b["id"].numpy()) for b in ds])
    )


def test_reader_refuses_unknown_version(runs, tmp_path):
    md = dict(runs["beam"].metadata, version=99)
    (tmp_path / "metadata.json").write_text(json.dumps(md))
    with pytest.raises(ValueError, match="Unsupported seqshards metadata version"):
        pipeline.load_metadata(str(tmp_path))


def test_batch_record_layout_is_framework_neutral(runs):
    md = runs["beam"].metadata
    path = runs["base"] / "beam" / md["shards"][0]["file"]
    record = next(iter(tf.data.TFRecordDataset(str(path)))).numpy()
    ex = tf.train.Example.FromString(record)
    f = ex.features.feature
    b, t, d = f["shape"].int64_list.value
    x = np.frombuffer(f["sequence_input"].bytes_list.value[0], "<f4").reshape(b, t, d)
    assert d == md["feature_dim"] and len(f["sequence_length"].int64_list.value) == b
    assert list(f["example_id"].bytes_list.value) == list(f["id"].bytes_list.value)
    assert len(f["label"].int64_list.value) == b and x.shape == (b, t, d)


def test_both_shuffle_payloads_give_identical_bytes(runs, dataset, tmp_path):
    # runs["beam"]: "auto" in-process on a small local input carries bytes.
    run(dataset, tmp_path / "ref", shuffle_payload="reference")
    assert dir_bytes(tmp_path / "ref") == dir_bytes(runs["base"] / "beam")


def test_two_runs_give_identical_bytes(runs, dataset, tmp_path):
    again = run(dataset, tmp_path / "beam2")
    assert dir_bytes(tmp_path / "beam2") == dir_bytes(runs["base"] / "beam")
    assert again.metadata == runs["beam"].metadata
    run(dataset, tmp_path / "tfdata2", engine="tfdata")
    assert dir_bytes(tmp_path / "tfdata2") == dir_bytes(runs["base"] / "tfdata")


@pytest.mark.slow
def test_multi_process_direct_runner_is_byte_identical(runs, dataset, tmp_path):
    run(
        dataset,
        tmp_path / "mp",
        beam_argv=["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    )
    assert dir_bytes(tmp_path / "mp") == dir_bytes(runs["base"] / "beam")


def test_materialize_transform_on_bare_bytes(dataset):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.stages.config import load_columns

    spec = load_columns(dataset["columns"])
    records = sorted(dataset["good"].values())[:40]
    with TestPipeline(
        runner=runner.make_runner(beam.options.pipeline_options.PipelineOptions())
    ) as p:
        out = (
            p
            | "Make" >> beam.Create(records + [b"\xff garbage"])
            | "Materialize"
            >> pipeline.MaterializeSequenceFeatures(
                spec.columns, spec.context, batch_size=8, bucket_boundaries=(4, 9)
            )
        )
        examples = (
            out["batches"]
            | "N" >> beam.Map(lambda b: b[2].examples)
            | "Sum" >> beam.CombineGlobally(sum)
        )
        reasons = out["errors"] | "R" >> beam.Map(lambda e: e.reason.value)
        assert_that(examples, equal_to([40]), label="AllWritten")
        assert_that(reasons, equal_to(["not_a_sequence_example"]), label="OneError")
