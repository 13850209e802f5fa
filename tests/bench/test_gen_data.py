"""Tests for bench/gen_data.py: determinism, prefix property, wire-format fidelity."""

import ast
import pathlib

import numpy as np
import pytest
from bench_modules import BENCH, load

gen_data = load("gen_data")


def _read_dir(path):
    return [p.read_bytes() for p in sorted(pathlib.Path(path).glob("data-*.tfrecord"))]


def test_same_seed_gives_same_bytes_and_other_seed_differs(tmp_path):
    for name, seed in [("a", 7), ("b", 7), ("c", 8)]:
        gen_data.write_dataset(
            str(tmp_path / name), num_examples=300, num_shards=3, seed=seed
        )
    a, b, c = (_read_dir(tmp_path / n) for n in "abc")
    assert len(a) == 3
    assert a == b
    assert a != c


def test_smaller_dataset_is_a_prefix_of_a_larger_one():
    small = list(gen_data.iter_examples(100, seed=1))
    large = list(gen_data.iter_examples(gen_data.CHUNK + 50, seed=1))
    assert large[:100] == small
    assert len(set(large)) == len(large)


def test_shards_are_valid_tfrecords_of_canonical_sequence_examples(tmp_path):
    tf = pytest.importorskip("tensorflow")
    paths = gen_data.write_dataset(
        str(tmp_path), num_examples=200, num_shards=2, seed=3
    )
    records = [r.numpy() for r in tf.data.TFRecordDataset(paths)]
    assert records == list(gen_data.iter_examples(200, seed=3))
    ids = set()
    for record in records:
        example = tf.train.SequenceExample.FromString(record)
        # Canonical: the protobuf API serializes the parsed message to the same bytes.
        assert example.SerializeToString(deterministic=True) == record
        context = example.context.feature
        ids.add(context["id"].bytes_list.value[0])
        assert context["label"].int64_list.value[0] in (0, 1)
        assert (
            context["user_country"].bytes_list.value[0].decode() in gen_data.COUNTRIES
        )
        lists = example.feature_lists.feature_list
        assert sorted(lists) == ["genre", "price", "rating", "watches"]
        length = len(lists["rating"].feature)
        assert 1 <= length <= gen_data.MAX_LENGTH
        assert all(len(lists[k].feature) == length for k in lists)
        assert all(len(f.float_list.value) == 2 for f in lists["price"].feature)
        watches = [f.int64_list.value[0] for f in lists["watches"].feature]
        assert all(0 <= w < gen_data.NUM_WATCH_IDS for w in watches)
        genres = {f.bytes_list.value[0].decode() for f in lists["genre"].feature}
        assert genres <= set(gen_data.GENRES)
    assert len(ids) == 200


def test_lengths_and_ids_follow_the_specified_distributions():
    draw = gen_data.draw_chunk(seed=0, chunk=0, size=gen_data.CHUNK)
    lengths = draw["lengths"]
    assert lengths.min() >= 1 and lengths.max() <= gen_data.MAX_LENGTH
    assert 27 <= np.median(lengths) <= 33
    watches = draw["watches"]
    assert watches.min() >= 0 and watches.max() < gen_data.NUM_WATCH_IDS
    assert np.mean(watches == 0) > 0.05  # heavy head: id 0 has ~8 % of the mass
    assert len(gen_data.GENRES) == 20 == len(set(gen_data.GENRES))


def test_columns_file_uses_the_generator_vocabulary():
    tree = ast.parse((BENCH / "columns.py").read_text())
    constants = {
        target.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id in ("VOCAB20", "NUM_WATCH_IDS")
    }
    assert constants == {
        "VOCAB20": gen_data.GENRES,
        "NUM_WATCH_IDS": gen_data.NUM_WATCH_IDS,
    }
