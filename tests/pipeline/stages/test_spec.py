"""The declarative columns spec: every kind, safe loading, errors naming the key."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from pipeline_data import COLUMNS_PY, COLUMNS_YAML
from repo_paths import ROOT  # noqa: E402

import transforms
from pipeline.cli.main import parse_args
from pipeline.stages import config, spec


def load_text(tmp_path, text, name="columns.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return config.load_columns(str(path))


def test_yaml_equals_the_python_columns(tmp_path):
    from_yaml = load_text(tmp_path, COLUMNS_YAML)
    (tmp_path / "c.py").write_text(COLUMNS_PY)
    from_py = config.load_columns(str(tmp_path / "c.py"), allow_python=True)
    assert from_yaml.columns == from_py.columns
    assert from_yaml.context == from_py.context


def test_data_columns_yaml_equals_data_columns_py():
    a = config.load_columns(os.path.join(ROOT, "data", "columns.yaml"))
    b = config.load_columns(os.path.join(ROOT, "data", "columns.py"), allow_python=True)
    assert a.columns == b.columns and a.context == b.context


def test_every_kind_and_option(tmp_path):
    (tmp_path / "vocab.txt").write_text("a\nb\nc\n")
    text = """
version: 1
columns:
  - {kind: numeric, key: pos, shape: [3], default_value: -1.5, dtype: float64}
  - {kind: numeric, key: grid, shape: 2}
  - kind: embedding
    dimension: 3
    combiner: sqrtn
    max_norm: 2.5
    trainable: false
    initializer: {kind: random_uniform, minval: -1, maxval: 1, seed: 5}
    categorical: {kind: identity, key: ids, num_buckets: 7, default_value: 0}
  - kind: embedding
    dimension: 4
    initializer: {seed: 11}
    categorical: {kind: hash_bucket, key: h, hash_bucket_size: 9, dtype: int64}
  - kind: indicator
    categorical:
      kind: vocabulary_list
      key: words
      vocabulary: [x, y]
      num_oov_buckets: 2
  - kind: indicator
    categorical: {kind: vocabulary_file, key: vf, path: vocab.txt, default_value: 1}
  - kind: embedding
    dimension: 2
    categorical: {kind: vocabulary_list, key: ints, vocabulary: [3, 5], dtype: int64}
context:
  id: {dtype: string}
  w: {dtype: float32, shape: [2], default_value: [0.5, 1.5]}
  tags: {kind: var_len, dtype: string}
"""
    got = load_text(tmp_path, text)
    (pos, grid, ids_emb, h_emb, words, vf, ints) = got.columns
    want_pos = transforms.sequence_numeric_column(
        "pos", shape=(3,), default_value=-1.5, dtype=tf.float64
    )
    assert pos == want_pos and grid.variable_shape.as_list() == [2]
    assert ids_emb.combiner == "sqrtn" and ids_emb.max_norm == 2.5
    assert not ids_emb.trainable and ids_emb.categorical_column.default_value == 0
    assert ids_emb.initializer.get_config()["seed"] == 5
    assert h_emb.categorical_column.hash_bucket_size == 9
    assert h_emb.categorical_column.dtype == tf.int64
    init = h_emb.initializer.get_config()
    assert init["seed"] == 11 and init["stddev"] == pytest.approx(0.5)
    assert words.categorical_column.num_oov_buckets == 2
    assert vf.categorical_column.vocabulary_file == str(tmp_path / "vocab.txt")
    assert vf.categorical_column.vocabulary_size == 3
    assert ints.categorical_column.vocabulary_list == (3, 5)
    assert got.context["w"] == tf.io.FixedLenFeature([2], tf.float32, [0.5, 1.5])
    assert isinstance(got.context["tags"], tf.io.VarLenFeature)
    # The seeded initializers give the same table in every run.
    layer = transforms.SequenceFeatures(list(got.columns))
    layer.build()
    again = transforms.SequenceFeatures(list(load_text(tmp_path, text).columns))
    again.build()
    for name, table in layer.get_embedding_weights().items():
        np.testing.assert_array_equal(table, again.get_embedding_weights()[name])


def test_checkpoint_warm_start(tmp_path):
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    var = tf.Variable(table, name="emb")
    ckpt = tf.train.Checkpoint(emb=var).write(str(tmp_path / "ckpt" / "model"))
    tensor = "emb/.ATTRIBUTES/VARIABLE_VALUE"
    text = f"""
columns:
  - kind: embedding
    dimension: 3
    checkpoint: {{path: ckpt/{os.path.basename(ckpt)}, tensor: {tensor}}}
    categorical: {{kind: identity, key: ids, num_buckets: 4}}
"""
    (column,) = load_text(tmp_path, text).columns
    assert column.ckpt_to_load_from == ckpt and column.tensor_name_in_ckpt == tensor
    layer = transforms.SequenceFeatures([column])
    layer.build()
    np.testing.assert_array_equal(layer.get_embedding_weights()["ids_embedding"], table)


def test_json_spec(tmp_path):
    document = {
        "columns": [{"kind": "numeric", "key": "r"}],
        "context": {"id": {"dtype": "string"}},
    }
    got = load_text(tmp_path, json.dumps(document), name="c.json")
    assert [c.name for c in got.columns] == ["r"] and list(got.context) == ["id"]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "columns:\n  - {kind: numeric, key: a}\n  - {kind: numeric, key: b}\n"
            "  - kind: embedding\n    dimension: 2\n"
            "    categorical: {kind: identity, key: c, num_buckets: x}\n",
            "columns[2].categorical.num_buckets: expected an int >= 1, got 'x'",
        ),
        ("columns: []\n", "columns: expected a non-empty list of columns, got []"),
        ("columns:\n  - {key: a}\n", "columns[0].kind: required (one of embedding"),
        (
            "columns:\n  - {kind: numeric_column, key: a}\n",
            "columns[0].kind: expected one of embedding, indicator, numeric, "
            "shared_embedding, got 'numeric_column'",
        ),
        (
            "columns:\n  - {kind: identity, key: a, num_buckets: 3}\n",
            "columns[0].kind: 'identity' is a categorical column, not a dense "
            "sequence column; wrap it",
        ),
        (
            "columns:\n  - {kind: numeric, key: a, shape: [2, 0]}\n",
            "columns[0].shape[1]: expected an int >= 1, got 0",
        ),
        (
            "columns:\n  - {kind: numeric, key: a, dimensoin: 3}\n",
            "columns[0]: unknown key 'dimensoin' for kind 'numeric'",
        ),
        (
            "columns:\n  - {kind: embedding, categorical: {kind: identity, key: a, "
            "num_buckets: 2}}\n",
            "columns[0].dimension: required for kind 'embedding'",
        ),
        (
            "columns:\n  - {kind: indicator, categorical: {kind: numeric, key: a}}\n",
            "columns[0].categorical.kind: expected a categorical kind",
        ),
        (
            "columns:\n  - kind: indicator\n    categorical: {kind: vocabulary_list, "
            "key: a, vocabulary: [yes, no]}\n",
            "columns[0].categorical.vocabulary[0]: expected a string or an int, got "
            "True",
        ),
        (
            "columns:\n  - kind: indicator\n    categorical: {kind: vocabulary_list, "
            "key: a, vocabulary: [x, x]}\n",
            "columns[0].categorical: Duplicate keys in vocabulary_list",
        ),
        (
            "columns:\n  - {kind: numeric, key: a}\n  - {kind: numeric, key: a}\n",
            "columns[1]: duplicate column name 'a' (also columns[0])",
        ),
        (
            "columns:\n  - {kind: numeric, key: a, dtype: string}\n",
            "columns[0].dtype: expected a dtype among float32",
        ),
        (
            "columns:\n  - {kind: embedding, dimension: 2, combiner: max, "
            "categorical: {kind: identity, key: a, num_buckets: 2}}\n",
            "columns[0].combiner: expected one of 'mean', 'sqrtn', 'sum', got 'max'",
        ),
        (
            "columns:\n  - {kind: numeric, key: a}\ncontext:\n  id: {dtype: str}\n",
            "context.id.dtype: expected a dtype among string, int64, float32",
        ),
        (
            "columns:\n  - {kind: numeric, key: a}\ncontext:\n  sequence_length: "
            "{dtype: int64}\n",
            "collides with an output key",
        ),
        (
            "columns:\n  - {kind: numeric, key: a}\ncontext:\n  l: {dtype: int64, "
            "default_value: x}\n",
            "context.l.default_value: expected a value of dtype int64",
        ),
        ("columns:\n  - {kind: numeric, key: a}\nextra: 1\n", "extra: unknown"),
        ("version: 2\ncolumns: []\n", "version: expected 1, got 2"),
        (
            "columns:\n  - {kind: numeric, key: a}\n  - {kind: numeric, key: a, "
            "key: b}\n",
            "line 3, column 29: duplicate key 'key'",
        ),
        ("- just a list\n", "(top level): expected a mapping"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ValueError) as info:
        load_text(tmp_path, text)
    assert message in str(info.value)
    assert str(tmp_path / "columns.yaml") in str(info.value) or "CONTEXT" in str(
        info.value
    )


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    with pytest.raises(spec.SpecError) as info:
        load_text(tmp_path, "columns:\n  - {kind: numeric, key: a\n")
    text = str(info.value)
    assert str(tmp_path / "columns.yaml") in text and "syntax error at line 3" in text


def test_yaml_tags_never_construct_objects(tmp_path):
    marker = tmp_path / "pwned"
    text = f"columns: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(spec.SpecError, match="unsupported YAML tag"):
        load_text(tmp_path, text)
    assert not marker.exists()


def test_python_file_needs_the_explicit_flag(tmp_path):
    path = tmp_path / "c.py"
    marker = tmp_path / "ran"
    path.write_text(f"open({str(marker)!r}, 'w').close()\n" + COLUMNS_PY)
    with pytest.raises(ValueError, match="--columns_py"):
        config.load_columns(str(path))
    assert not marker.exists()  # refused before running anything
    cfg, _ = parse_args(["--input", "i", "--output", "o", "--columns_py", str(path)])
    assert config.load_job_columns(cfg).columns
    assert marker.exists()
    with pytest.raises(SystemExit):  # one of the two, not both
        parse_args(
            [
                "--input",
                "i",
                "--output",
                "o",
                "--columns",
                "a.yaml",
                "--columns_py",
                "b.py",
            ]
        )
    with pytest.raises(ValueError, match="exactly one"):
        config.JobConfig("i", "o")


def test_spec_table_is_extensible(tmp_path, monkeypatch):
    kind = spec.Kind(
        "numeric_pair",
        spec.DENSE,
        (spec.Field("key", spec.string, required=True),),
        lambda key: [
            transforms.sequence_numeric_column(f"{key}_a"),
            transforms.sequence_numeric_column(f"{key}_b"),
        ],
    )
    monkeypatch.setitem(spec.KINDS, kind.name, kind)
    got = load_text(tmp_path, "columns:\n  - {kind: numeric_pair, key: p}\n")
    assert [c.name for c in got.columns] == ["p_a", "p_b"]
