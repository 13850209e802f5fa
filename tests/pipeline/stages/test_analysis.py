"""The analyze pass: exact statistics and ordered vocabularies equal to NumPy /
fractions over the records the job writes, the same bytes on every engine, and
a materialized output that uses them."""

import collections
import fractions
import glob
import hashlib
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from pipeline_data import BATCH_SIZE

import pipeline
import transforms
from pipeline import driver
from pipeline.cli.main import parse_args
from pipeline.stages import analysis
from pipeline.stages.config import JobConfig

SPEC = """
columns:
  - {kind: numeric, key: rating, normalizer: zscore}
  - kind: embedding
    dimension: 4
    categorical: {kind: identity, key: watches, num_buckets: 50}
  - kind: indicator
    categorical:
      kind: vocabulary_file
      key: genre
      path: vocab/genre.txt
      num_oov_buckets: 1
      analyze: {top_k: 3, frequency_threshold: 2}
  - kind: indicator
    categorical:
      kind: bucketized
      source: {kind: numeric, key: rating, normalizer: minmax}
      boundaries: [0.25, 0.5, 0.75]
context:
  id: {dtype: string}
  label: {dtype: int64}
"""
MULTI_PROCESS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def write_spec(directory, text=SPEC, name="analysis.yaml"):
    path = directory / name
    path.write_text(text)
    return str(path)


def run(dataset, spec, out, engine="beam", beam_argv=(), **kw):
    config = JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=str(out),
        columns_file=spec,
        batch_size=BATCH_SIZE,
        engine=engine,
        progress=False,
        analyze=True,
        **kw,
    )
    return driver.run(config, list(beam_argv))


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    return write_spec(tmp_path_factory.mktemp("spec"))


@pytest.fixture(scope="module")
def runs(dataset, spec_path, tmp_path_factory):
    base = tmp_path_factory.mktemp("analyze")
    return {
        "beam": run(dataset, spec_path, base / "beam"),
        "tfdata": run(dataset, spec_path, base / "tfdata", engine="tfdata"),
        "base": base,
    }


def good_values(dataset, key):
    """Every value of feature list `key` in the records the job writes."""
    out = []
    for data in dataset["good"].values():
        ex = tf.train.SequenceExample.FromString(data)
        for f in ex.feature_lists.feature_list[key].feature:
            out.extend(f.float_list.value if key == "rating" else f.bytes_list.value)
    return out


def exact_stats(values):
    """Mean and population std from exact rational sums (the reference)."""
    values = [fractions.Fraction(float(v)) for v in np.asarray(values, np.float32)]
    n = len(values)
    mean = sum(values) / n
    variance = sum(v * v for v in values) / n - mean * mean
    return float(mean), math.sqrt(float(variance))


def assets_of(directory):
    out = {}
    for path in sorted(glob.glob(f"{directory}/assets/*")):
        with open(path, "rb") as f:
            out[os.path.basename(path)] = f.read()
    return out


# --- results -------------------------------------------------------------------------


def test_stats_equal_numpy_over_the_written_records(runs, dataset):
    values = np.asarray(good_values(dataset, "rating"), np.float32)
    stats = json.loads(assets_of(runs["base"] / "beam")["stats.json"])
    rating = stats["numeric"]["rating"]
    assert rating["count"] == values.size
    assert rating["min"] == float(values.min()) and rating["max"] == float(values.max())
    v64 = values.astype(np.float64)
    np.testing.assert_allclose(rating["mean"], np.mean(v64), rtol=1e-14)
    np.testing.assert_allclose(rating["std"], np.std(v64), rtol=1e-12)
    # Bit-exact: rounded once from the exact sums.
    assert (rating["mean"], rating["std"]) == exact_stats(values)
    assert rating["normalizers"] == ["minmax", "zscore"]


def test_vocabulary_is_ordered_by_count_then_value(runs, dataset):
    counts = collections.Counter(good_values(dataset, "genre"))
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    want = [v for v in ranked if counts[v] >= 2][:3]
    assets = assets_of(runs["base"] / "beam")
    assert assets["genre.txt"] == b"".join(v + b"\n" for v in want)
    entry = json.loads(assets["stats.json"])["vocabularies"]["genre.txt"]
    assert entry == {
        "file": "assets/genre.txt",
        "frequency_threshold": 2,
        "key": "genre",
        "size": 3,
        "top_k": 3,
    }


def test_same_assets_on_both_engines(runs):
    assert assets_of(runs["base"] / "beam") == assets_of(runs["base"] / "tfdata")


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_metadata_lists_the_assets(runs, engine):
    listed = runs[engine].metadata["assets"]
    directory = runs["base"] / engine
    assert list(listed) == [f"assets/{name}" for name in assets_of(directory)]
    assert "assets/stats.json" in listed
    for rel, sha256 in listed.items():  # the bytes' SHA-256, as any tool computes
        assert sha256 == hashlib.sha256((directory / rel).read_bytes()).hexdigest()


@pytest.mark.slow  # ~40 s: two multi-process pipelines
def test_same_assets_multi_process(runs, dataset, spec_path, tmp_path):
    out = tmp_path / "mp"
    run(dataset, spec_path, out, beam_argv=MULTI_PROCESS)
    assert assets_of(out) == assets_of(runs["base"] / "beam")
    with (
        open(out / "metadata.json") as f,
        open(runs["base"] / "beam/metadata.json") as g,
    ):
        assert json.load(f)["counts"] == json.load(g)["counts"]


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_materialized_output_uses_the_results(runs, dataset, engine):
    """Rows equal a layer built by hand from stats.json and the vocabulary."""
    directory = runs["base"] / engine
    stats = json.loads(assets_of(directory)["stats.json"])["numeric"]["rating"]
    vocab = assets_of(directory)["genre.txt"].decode().splitlines()
    table = np.load(directory / "embeddings/watches_embedding.npy")
    columns = [
        transforms.sequence_numeric_column(
            "rating", normalizer_fn=transforms.zscore(stats["mean"], stats["std"])
        ),
        transforms.embedding_column(
            transforms.sequence_categorical_column_with_identity("watches", 50),
            4,
            initializer=table,
        ),
        transforms.indicator_column(
            transforms.sequence_categorical_column_with_vocabulary_list(
                "genre", vocab, num_oov_buckets=1
            )
        ),
        transforms.indicator_column(
            transforms.sequence_bucketized_column(
                transforms.sequence_numeric_column(
                    "rating",
                    normalizer_fn=transforms.minmax(stats["min"], stats["max"]),
                ),
                [0.25, 0.5, 0.75],
            )
        ),
    ]
    layer = transforms.SequenceFeatures(columns)
    spec = transforms.make_parse_example_spec(columns)
    md = runs[engine].metadata
    assert [c["name"] for c in md["columns"]] == [
        "genre_indicator",
        "rating",
        "rating_bucketized_indicator",
        "watches_embedding",
    ]
    seen = 0
    for batch in pipeline.load_dataset(str(directory)):
        x = batch["sequence_input"].numpy()
        lengths = batch["sequence_length"].numpy()
        serialized = [dataset["good"][i] for i in batch["id"].numpy()]
        _, features, _ = tf.io.parse_sequence_example(
            serialized, sequence_features=spec
        )
        want, want_lengths = layer(features)
        np.testing.assert_array_equal(lengths, want_lengths.numpy())
        for row, length in enumerate(lengths):
            np.testing.assert_allclose(
                x[row, :length], want.numpy()[row, :length], rtol=1e-6, atol=1e-6
            )
        seen += len(lengths)
    assert seen == len(dataset["good"])
    # The rating slot is exactly float32((x - mean) / std) in float64.
    x0 = np.asarray(good_values(dataset, "rating")[:1], np.float32)
    assert (
        np.float32((x0.astype(np.float64)[0] - stats["mean"]) / stats["std"])
        == (transforms.zscore(stats["mean"], stats["std"])(tf.constant(x0)).numpy()[0])
    )


# --- the pure parts ------------------------------------------------------------------


def test_moments_are_exact_and_partition_independent():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.normal(3.0, 2.0, 5000),
            rng.normal(0, 1e30, 50),
            [1e-45, -1e-45, 3.4e38, -3.4e38, 0.0, -0.0, 1e-40],
        ]
    ).astype(np.float32)
    whole = analysis.Moments.of(values)
    for cuts in ([], [1], [17, 4000], list(range(1, len(values), 97))):
        parts = np.split(values, cuts)
        merged = analysis.Moments()
        for part in reversed(parts):
            merged = merged.merge(analysis.Moments.of(part))
        assert merged == whole
    exact = [fractions.Fraction(float(v)) for v in values]
    assert fractions.Fraction(whole.total, 2**173) == sum(exact)
    assert fractions.Fraction(whole.squares, 2**346) == sum(v * v for v in exact)
    stats = whole.finalize()
    assert (stats["mean"], stats["std"]) == exact_stats(values)
    assert analysis.Moments().finalize() == {
        "count": 0,
        "mean": 0.0,
        "std": 0.0,
        "min": 0.0,
        "max": 0.0,
    }


def test_ranking_ties_and_newlines():
    counts = analysis.value_counts(
        np.array([b"b", b"a", b"c", b"a", b"b", b"x\ny", b"x\ny", b"d"], object)
    )
    assert counts == {b"a": 2, b"b": 2, b"c": 1, b"d": 1}  # newline value skipped
    ranked = analysis.rank_values(counts, None)
    assert ranked == [(b"a", 2), (b"b", 2), (b"c", 1), (b"d", 1)]
    assert analysis.rank_values(counts, 3) == ranked[:3]
    request = analysis.VocabularyRequest("k", "string", "k.txt", 1, 2)
    assert analysis.vocabulary(ranked, request) == [b"a"]
    ints = analysis.value_counts(np.array([5, -1, 5, 3], np.int64))
    assert analysis.rank_values(ints, None) == [(5, 2), (-1, 1), (3, 1)]


def test_conflicting_vocabulary_names_are_refused():
    a = analysis.VocabularyRequest("k", "string", "v.txt", 3, 1, where="columns[0]")
    b = analysis.VocabularyRequest("j", "string", "v.txt", 3, 1, where="columns[1]")
    assert analysis.check_requests([a, a]) == (a,)
    with pytest.raises(ValueError, match="columns\\[0\\] and columns\\[1\\]"):
        analysis.check_requests([a, b])


# --- the job -------------------------------------------------------------------------


def test_requests_need_the_flag(dataset, spec_path, tmp_path):
    config = JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=str(tmp_path / "out"),
        columns_file=spec_path,
        progress=False,
    )
    with pytest.raises(ValueError, match="--analyze") as info:
        driver.run(config)
    assert "columns[0].normalizer" in str(info.value)
    assert "columns[2].categorical" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_cli_flag():
    config, _ = parse_args(
        ["--input", "x", "--output", "o", "--columns", "c.yaml", "--analyze"]
    )
    assert config.analyze


def test_empty_vocabulary_fails_and_leaves_no_output(dataset, tmp_path):
    spec = write_spec(
        tmp_path,
        SPEC.replace("frequency_threshold: 2", "frequency_threshold: 100000"),
    )
    with pytest.raises(ValueError, match="vocabulary of feature 'genre'.* is empty"):
        run(dataset, spec, tmp_path / "out", engine="tfdata")
    assert not glob.glob(f"{tmp_path}/out*")


def test_an_existing_vocabulary_file_is_used_as_is(dataset, tmp_path):
    (tmp_path / "vocab").mkdir()
    (tmp_path / "vocab/genre.txt").write_text("horror\ndrama\n")
    text = SPEC.replace("normalizer: zscore", "shape: [1]")
    spec = write_spec(tmp_path, text.replace("normalizer: minmax", "shape: [1]"))
    result = run(dataset, spec, tmp_path / "out", engine="tfdata")
    assert not (tmp_path / "out/assets").exists()  # nothing to analyze
    widths = {c["name"]: c["width"] for c in result.metadata["columns"]}
    assert widths["genre_indicator"] == 3  # 2 lines + 1 OOV bucket
