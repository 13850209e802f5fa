"""Declarative spec kinds of issue 7 (weighted, bucketized, shared_embedding,
numeric normalizer, analyzed vocabulary_file) and a job over them, with
`weight_count_mismatch` dead letters."""

import glob
import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

import pipeline
import transforms
from pipeline import driver
from pipeline.stages import analysis, spec
from pipeline.stages.config import JobConfig
from pipeline.stages.tfrecord import write_tfrecords


def parse(text, **kw):
    return spec.parse(yaml.safe_load(text), **kw)


def one(text, **kw):
    columns, _ = parse(text, **kw)
    assert len(columns) == 1
    return columns[0]


WEIGHTED = """
columns:
  - kind: embedding
    dimension: 3
    combiner: sum
    categorical:
      kind: weighted
      weight_key: w
      categorical: {kind: identity, key: ids, num_buckets: 20}
"""
BUCKETIZED = """
columns:
  - kind: indicator
    categorical:
      kind: bucketized
      source: {kind: numeric, key: price, shape: 2}
      boundaries: [1, 10.5]
"""
SHARED = """
columns:
  - kind: shared_embedding
    dimension: 2
    combiner: sqrtn
    categoricals:
      - {kind: identity, key: shown, num_buckets: 20}
      - {kind: identity, key: ids, num_buckets: 20}
"""


def test_weighted():
    column = one(WEIGHTED)
    assert column == transforms.embedding_column(
        transforms.sequence_weighted_categorical_column(
            transforms.sequence_categorical_column_with_identity("ids", 20), "w"
        ),
        3,
        combiner="sum",
    )
    assert transforms.make_parse_example_spec([column])["w"] == tf.io.VarLenFeature(
        tf.float32
    )


def test_bucketized():
    column = one(BUCKETIZED)
    bucket = column.categorical_column
    assert bucket.boundaries == (1.0, 10.5) and bucket.num_buckets == 6
    assert bucket.source_column == transforms.sequence_numeric_column("price", 2)


def test_shared_embedding_builds_one_table():
    columns, _ = parse(SHARED)
    assert [c.name for c in columns] == [
        "shown_shared_embedding",
        "ids_shared_embedding",
    ]
    assert {c.table_name for c in columns} == {"ids_shown_shared_embedding"}
    named, _ = parse(SHARED + "    name: items\n")
    assert {c.table_name for c in named} == {"items"}
    layer = transforms.SequenceFeatures(columns)
    layer.build()
    assert len(layer.variables) == 1
    seeded, _ = parse(SHARED + "    initializer: {kind: truncated_normal}\n")
    again, _ = parse(SHARED + "    initializer: {kind: truncated_normal}\n")
    weights = [
        transforms.SequenceFeatures(c).get_embedding_weights()[
            "ids_shown_shared_embedding"
        ]
        for c in (seeded, again)
    ]
    np.testing.assert_array_equal(weights[0], weights[1])


def test_fixed_normalizers():
    column = one(
        "columns:\n  - {kind: numeric, key: x, normalizer: {kind: zscore, mean: 1, "
        "std: 2}}\n"
    )
    assert column.normalizer_fn == transforms.zscore(1.0, 2.0)
    column = one(
        "columns:\n  - {kind: numeric, key: x, normalizer: {kind: minmax, min: -1, "
        "max: 3}}\n"
    )
    assert column.normalizer_fn == transforms.minmax(-1.0, 3.0)


def test_analyzed_normalizer_and_vocabulary(tmp_path):
    text = f"""
columns:
  - {{kind: numeric, key: x, normalizer: zscore}}
  - kind: indicator
    categorical:
      kind: vocabulary_file
      key: g
      path: {tmp_path}/missing/g.txt
      analyze: true
"""
    requests = []
    columns, _ = parse(text, requests=requests)
    assert requests == [
        analysis.StatsRequest("x", "zscore"),
        analysis.VocabularyRequest("g", "string", "g.txt", None, 1),
    ]
    assert requests[0].where == "columns[0].normalizer"
    # Stand-ins until analyzed: no normalizer, a one-line vocabulary.
    assert columns[0].normalizer_fn is None
    assert columns[1].categorical_column.vocabulary_size == 1
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets/g.txt").write_text("b\na\n")
    results = analysis.Analysis(
        str(tmp_path),
        {"x": {"count": 2, "mean": 1.5, "std": 0.5, "min": 1.0, "max": 2.0}},
        {"g.txt": {"key": "g", "file": "assets/g.txt", "size": 2}},
    )
    columns, _ = parse(text, analysis=results)
    assert columns[0].normalizer_fn == transforms.zscore(1.5, 0.5)
    vocab = columns[1].categorical_column
    assert vocab.vocabulary_file == f"{tmp_path}/assets/g.txt"
    assert vocab.vocabulary_size == 2


@pytest.mark.parametrize(
    "text, match",
    [
        (
            WEIGHTED.replace("      weight_key: w\n", ""),
            "columns[0].categorical.weight_key: required",
        ),
        (
            WEIGHTED.replace("weight_key: w", "weight_key: ids"),
            "columns[0].categorical: Parse config",
        ),
        (
            BUCKETIZED.replace("[1, 10.5]", "[10.5, 1]"),
            "columns[0].categorical.boundaries: expected strictly increasing",
        ),
        (
            BUCKETIZED.replace(
                "{kind: numeric, key: price, shape: 2}",
                "{kind: "
                "indicator, categorical: {kind: identity, key: p, num_buckets: 2}}",
            ),
            "source_column must be a column generated with sequence_numeric_column",
        ),
        (
            SHARED.replace("key: ids, num_buckets: 20", "key: ids, num_buckets: 21"),
            "columns[0]: To use shared_embedding_column, all categorical_columns must "
            "have the same number of buckets",
        ),
        (
            "columns:\n  - {kind: shared_embedding, dimension: 2, categoricals: []}\n",
            "columns[0].categoricals: expected a non-empty list",
        ),
        (
            "columns:\n  - {kind: numeric, key: x, normalizer: l2}\n",
            "columns[0].normalizer: expected zscore, minmax",
        ),
        (
            "columns:\n  - {kind: numeric, key: x, normalizer: {kind: zscore, "
            "mean: 0}}\n",
            "columns[0].normalizer.std: required",
        ),
        (
            "columns:\n  - {kind: numeric, key: x, normalizer: {kind: zscore, mean: 0, "
            "std: -1}}\n",
            "columns[0].normalizer: Invalid value for argument `std`",
        ),
        (
            "columns:\n  - {kind: numeric, key: x, dtype: int64, normalizer: zscore}\n",
            "columns[0]: normalizer: 'zscore' is computed by --analyze over float32",
        ),
        (
            "columns:\n  - kind: indicator\n    categorical: {kind: vocabulary_file, "
            "key: g, path: /nope/g.txt, size: 3, analyze: true}\n",
            "columns[0].categorical: `size` cannot be combined with `analyze`",
        ),
        (
            "columns:\n  - kind: indicator\n    categorical: {kind: vocabulary_file, "
            "key: g, path: /nope/g.txt, analyze: {top_k: 0}}\n",
            "columns[0].categorical.analyze.top_k: expected an int >= 1",
        ),
    ],
)
def test_errors_name_the_key(text, match):
    with pytest.raises(spec.SpecError) as info:
        parse(text)
    assert match in str(info.value)


# --- a job over the new kinds --------------------------------------------------------

JOB_SPEC = """
columns:
  - kind: embedding
    dimension: 3
    combiner: sum
    categorical:
      kind: weighted
      weight_key: w
      categorical: {kind: identity, key: ids, num_buckets: 20}
  - kind: shared_embedding
    dimension: 2
    categoricals:
      - {kind: identity, key: ids, num_buckets: 20}
      - {kind: identity, key: shown, num_buckets: 20}
  - kind: indicator
    categorical:
      kind: bucketized
      source: {kind: numeric, key: price}
      boundaries: [1.0, 10.0]
context:
  id: {dtype: string}
"""


def record(ident, ids, weights, shown, price):
    ex = tf.train.SequenceExample()
    ex.context.feature["id"].bytes_list.value.append(ident.encode())
    lists = ex.feature_lists.feature_list
    for step in ids:
        lists["ids"].feature.add().int64_list.value.extend(step)
    for step in weights:
        lists["w"].feature.add().float_list.value.extend(step)
    for step in shown:
        lists["shown"].feature.add().int64_list.value.extend(step)
    for step in price:
        lists["price"].feature.add().float_list.value.append(step)
    return ex.SerializeToString()


@pytest.fixture(scope="module")
def kinds_dataset(tmp_path_factory):
    base = tmp_path_factory.mktemp("kinds")
    rng = np.random.default_rng(1)
    good = {}
    records = []
    for i in range(40):
        n = int(rng.integers(1, 6))
        ids = [rng.integers(0, 20, int(rng.integers(1, 3))).tolist() for _ in range(n)]
        weights = [np.round(rng.uniform(0.1, 2, len(s)), 2).tolist() for s in ids]
        data = record(
            f"ok-{i}",
            ids,
            weights,
            [[int(rng.integers(0, 20))] for _ in range(n)],
            np.round(rng.uniform(0, 20, n), 1).tolist(),
        )
        good[f"ok-{i}".encode()] = data
        records.append(data)
    mismatch = record("bad", [[1, 2], [3]], [[0.5], [1.0]], [[1], [2]], [1.0, 2.0])
    records.insert(7, mismatch)
    path = str(base / "in-00000.tfrecord")
    write_tfrecords(path, records)
    spec_path = base / "columns.yaml"
    spec_path.write_text(JOB_SPEC)
    return {"pattern": path, "spec": str(spec_path), "good": good, "base": base}


@pytest.mark.parametrize("engine", ["beam", "tfdata"])
def test_job_over_the_new_kinds(kinds_dataset, engine):
    out = kinds_dataset["base"] / f"out-{engine}"
    config = JobConfig(
        input_pattern=kinds_dataset["pattern"],
        output_dir=str(out),
        columns_file=kinds_dataset["spec"],
        batch_size=8,
        engine=engine,
        progress=False,
    )
    md = driver.run(config).metadata
    assert md["counts"]["errors"] == {"weight_count_mismatch": 1}
    assert md["counts"]["error_positions"] == {"weight_count_mismatch": [[0, 7]]}
    with open(out / "errors/weight_count_mismatch.jsonl") as f:
        error = json.loads(f.readline())
    assert error["reason"] == "weight_count_mismatch" and error["record_index"] == 7
    assert "'ids' and 'w'" in error["detail"]
    # One table for the shared columns, saved once.
    assert sorted(md["embeddings"]) == [
        "ids_shown_shared_embedding",
        "ids_weighted_by_w_embedding",
    ]
    columns, _ = spec.load(kinds_dataset["spec"])[:2]
    layer = transforms.SequenceFeatures(columns)
    layer.set_embedding_weights(
        {name: np.load(out / path) for name, path in md["embeddings"].items()}
    )
    parse_spec = transforms.make_parse_example_spec(columns)
    seen = 0
    for batch in pipeline.load_dataset(str(out)):
        serialized = [kinds_dataset["good"][i] for i in batch["id"].numpy()]
        _, features, _ = tf.io.parse_sequence_example(
            serialized, sequence_features=parse_spec
        )
        want, lengths = layer(features)
        x = batch["sequence_input"].numpy()
        np.testing.assert_array_equal(batch["sequence_length"].numpy(), lengths)
        for row, n in enumerate(lengths.numpy()):
            np.testing.assert_allclose(x[row, :n], want.numpy()[row, :n], rtol=1e-6)
        seen += len(serialized)
    assert seen == len(kinds_dataset["good"])
    assert len(glob.glob(f"{out}/embeddings/*.npy")) == 2
