"""`--static_shapes` end to end, both engines: the planned batches, the same
bytes, metadata; the flags and their checks.

The dataset fixture has dead letters and a duplicate id: the static plan must be
made from exactly the examples the job writes (at most one short batch).
"""

import json
import os

import numpy as np
import pytest
from pipeline_data import BATCH_SIZE, dir_bytes, run_job

from pipeline import numpy_reader
from pipeline.cli import stats
from pipeline.cli.main import parse_args
from pipeline.stages import config, static_shapes, tfrecord
from pipeline.stages.paths import DROPPED_DIR, DROPPED_FILE


def _run(dataset, out, engine, **options):
    return run_job(dataset, out, engine, num_shards=2, **options)


def _shards(directory):
    return {k: v for k, v in dir_bytes(directory).items() if k.startswith("shards/")}


def _valid_examples(dataset):
    """Positions and lengths of the examples the job keeps (stats' pass)."""
    files = tfrecord.match_files(dataset["pattern"])
    spec = config.load_columns(dataset["columns"])
    collected = stats.collect(files, spec)
    return np.asarray(collected.positions), collected.lengths


@pytest.fixture(scope="module")
def static_runs(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("static")
    options = dict(static_shapes=True, max_buckets=3)
    return {
        engine: (out / engine, _run(dataset, out / engine, engine, **options))
        for engine in ("tfdata", "beam")
    }


def test_engines_write_the_same_static_shards(static_runs):
    (tf_dir, tf_run), (beam_dir, beam_run) = static_runs["tfdata"], static_runs["beam"]
    assert _shards(tf_dir) == _shards(beam_dir)
    assert len(_shards(tf_dir)) == 2
    tf_md, beam_md = tf_run.metadata, beam_run.metadata
    assert tf_md["static_shapes"] == beam_md["static_shapes"]
    assert tf_md["counts"] == beam_md["counts"]


def test_static_batches_are_the_planned_ones(dataset, static_runs):
    directory, result = static_runs["tfdata"]
    md = result.metadata
    positions, lengths = _valid_examples(dataset)
    planned = static_shapes.plan_batches(
        positions, lengths, md["bucket_boundaries"], BATCH_SIZE
    )
    batches = list(numpy_reader.iter_batches(str(directory)))  # batch k in order
    assert len(batches) == len(planned.batches) == md["counts"]["batches"]
    for batch, members, t in zip(
        batches, planned.batches, planned.lengths, strict=True
    ):
        assert batch["sequence_length"].tolist() == lengths[members].tolist()
        assert batch["sequence_input"].shape[1] == t
    shapes = {
        (len(b["sequence_length"]), b["sequence_input"].shape[1]) for b in batches
    }
    assert len(shapes) <= 3  # --max_buckets 3: at most 3 distinct [B, T]
    entry = md["static_shapes"]
    assert entry["short_batches"] == sum(
        len(b["sequence_length"]) < BATCH_SIZE for b in batches
    )
    assert entry["short_batches"] <= 1
    assert {(s["shape"][0], s["shape"][1]) for s in entry["shapes"]} == shapes
    assert sum(s["batches"] for s in entry["shapes"]) == len(batches)
    assert entry["max_buckets"] == 3 and entry["drop_remainder"] is False
    c = md["counts"]
    assert c["examples_written"] + c["errors_total"] + c["dropped"] == c["examples_in"]
    assert c["dropped"] == 0 and c["examples_written"] == len(lengths)


def test_drop_remainder_drops_each_bucket_remainder_visibly(dataset, tmp_path):
    runs = {
        engine: _run(
            dataset,
            tmp_path / engine,
            engine,
            static_shapes=True,
            max_buckets=4,
            drop_remainder=True,
        )
        for engine in ("tfdata", "beam")
    }
    assert _shards(tmp_path / "tfdata") == _shards(tmp_path / "beam")
    md = runs["tfdata"].metadata
    assert md["counts"] == runs["beam"].metadata["counts"]
    c = md["counts"]
    assert c["dropped"] > 0
    assert c["examples_written"] + c["errors_total"] + c["dropped"] == c["examples_in"]
    assert md["static_shapes"]["short_batches"] == 0
    assert md["static_shapes"]["dropped_files"] == [DROPPED_FILE]
    positions, lengths = _valid_examples(dataset)
    planned = static_shapes.plan_batches(
        positions, lengths, md["bucket_boundaries"], BATCH_SIZE, drop_remainder=True
    )
    files = tfrecord.match_files(dataset["pattern"])
    for engine in runs:
        path = tmp_path / engine / DROPPED_FILE
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        got = sorted((files.index(x["file"]), x["record_index"]) for x in lines)
        expected = sorted(map(tuple, positions[planned.dropped].tolist()))
        assert got == expected and len(lines) == c["dropped"]
    batches = list(numpy_reader.iter_batches(str(tmp_path / "beam")))
    assert all(len(b["sequence_length"]) == BATCH_SIZE for b in batches)
    assert len({b["sequence_input"].shape for b in batches}) <= 4
    # dropped/ is ours: --overwrite replaces the output holding it.
    again = _run(
        dataset,
        tmp_path / "tfdata",
        "tfdata",
        static_shapes=True,
        max_buckets=4,
        drop_remainder=True,
        overwrite=True,
    )
    assert again.metadata["counts"] == c


def test_explicit_boundaries_pad_to_the_boundary(dataset, tmp_path):
    result = _run(
        dataset,
        tmp_path / "out",
        "tfdata",
        static_shapes=True,
        bucket_boundaries=(3, 6),
    )
    _, lengths = _valid_examples(dataset)
    ts = {s["shape"][1] for s in result.metadata["static_shapes"]["shapes"]}
    assert ts <= {3, 6, int(lengths.max())}
    for batch in numpy_reader.iter_batches(str(tmp_path / "out")):
        t = batch["sequence_input"].shape[1]
        assert t in ts and batch["sequence_length"].max() <= t
        assert not batch["sequence_input"][0, batch["sequence_length"][0] :].any()


def test_max_buckets_alone_bounds_dynamic_buckets(dataset, tmp_path):
    result = _run(dataset, tmp_path / "out", "tfdata", max_buckets=2)
    md = result.metadata
    assert len(md["bucket_boundaries"]) + 1 <= 2
    assert md["max_buckets"] == 2 and "static_shapes" not in md
    assert "dropped" not in md["counts"]


def test_flags_map_onto_the_config():
    cfg, _ = parse_args(
        ["--input", "x", "--columns", "c.yaml", "--output", "o",
         "--static_shapes", "--max_buckets", "16", "--drop_remainder"]
    )  # fmt: skip
    assert (cfg.static_shapes, cfg.max_buckets, cfg.drop_remainder) == (True, 16, True)
    cfg, _ = parse_args(["--input", "x", "--columns", "c.yaml", "--output", "o"])
    assert (cfg.static_shapes, cfg.max_buckets, cfg.drop_remainder) == (
        False,
        None,
        False,
    )


@pytest.mark.parametrize(
    "options, match",
    [
        ({"drop_remainder": True}, "drop_remainder"),
        ({"max_buckets": 0}, "max_buckets"),
        ({"max_buckets": 2, "bucket_boundaries": (4, 8, 16)}, "max_buckets"),
    ],
)
def test_config_refuses_inconsistent_static_options(options, match):
    with pytest.raises(ValueError, match=match):
        config.JobConfig(
            input_pattern="x", output_dir="o", columns_file="c.yaml", **options
        )


def test_no_static_keys_without_the_flags(dataset, tmp_path):
    md = _run(dataset, tmp_path / "out", "tfdata").metadata
    assert "static_shapes" not in md and "max_buckets" not in md
    assert "dropped" not in md["counts"]
    assert not os.path.exists(tmp_path / "out" / DROPPED_DIR)
