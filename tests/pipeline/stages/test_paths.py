"""Output safety (issue 24): what `--overwrite` may replace, inputs the output
may not hold, and file names from the spec that stay inside DIR."""

import glob
import hashlib
import json
import os
import shutil
import urllib.parse

import numpy as np
import pytest
import tensorflow as tf
from pipeline_data import BATCH_SIZE, COLUMNS_YAML, write_dataset

from pipeline import driver
from pipeline.stages import paths
from pipeline.stages.config import JobConfig

ENGINES = ["beam", "tfdata"]


def tree_hashes(root) -> dict[str, str]:
    """Relative path -> sha256 of every file (and symlink target) under `root`."""
    out = {}
    for path in sorted(glob.glob(f"{root}/**/*", recursive=True)):
        rel = os.path.relpath(path, root)
        if os.path.islink(path):
            out[rel] = "link:" + os.readlink(path)
        elif os.path.isfile(path):
            with open(path, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture
def workspace(tmp_path):
    """tmp/in/ (3 input files and the columns file), the job's config maker."""
    data = tmp_path / "in"
    data.mkdir()
    write_dataset(data)
    (data / "columns.yaml").write_text(COLUMNS_YAML)

    def config(out, engine="tfdata", **kw):
        return JobConfig(
            input_pattern=str(data / "in-*.tfrecord"),
            output_dir=str(out),
            columns_file=kw.pop("columns_file", str(data / "columns.yaml")),
            batch_size=BATCH_SIZE,
            engine=engine,
            progress=False,
            **kw,
        )

    return tmp_path, data, config


def run_refused(config, root, error, match):
    before = tree_hashes(root)
    with pytest.raises(error, match=match):
        driver.run(config)
    assert tree_hashes(root) == before  # nothing written, nothing removed


# --- refused, whatever the flags ------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_output_equal_to_the_input_directory_is_refused(workspace, engine):
    root, data, config = workspace
    run_refused(
        config(data, engine, overwrite=True), root, ValueError, "holds the input file"
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_output_symlink_to_the_input_directory_is_refused(workspace, engine):
    root, data, config = workspace
    (root / "link").symlink_to(data, target_is_directory=True)
    run_refused(
        config(root / "link", engine, overwrite=True),
        root,
        ValueError,
        "holds the input file",
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_output_parent_of_the_input_is_refused(workspace, engine):
    root, data, config = workspace
    # Spelled with `..` to check paths are compared resolved.
    out = str(data / "..")
    run_refused(config(out, engine, overwrite=True), root, ValueError, "input file")


@pytest.mark.parametrize("engine", ENGINES)
def test_output_holding_the_columns_file_is_refused(workspace, engine):
    root, data, config = workspace
    elsewhere = root / "spec"
    elsewhere.mkdir()
    shutil.copy(data / "columns.yaml", elsewhere / "columns.yaml")
    run_refused(
        config(
            elsewhere,
            engine,
            overwrite=True,
            columns_file=str(elsewhere / "columns.yaml"),
        ),
        root,
        ValueError,
        "columns file",
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_output_holding_a_vocabulary_file_is_refused(workspace, engine):
    root, data, config = workspace
    vocab_dir = root / "vocab"
    vocab_dir.mkdir()
    (vocab_dir / "genres.txt").write_text("action\ncomedy\ndrama\nhorror\n")
    spec = COLUMNS_YAML.replace(
        "kind: vocabulary_list\n      key: genre\n"
        "      vocabulary: [action, comedy, drama, horror]",
        f"kind: vocabulary_file\n      key: genre\n      path: {vocab_dir}/genres.txt",
    )
    assert "vocabulary_file" in spec
    (data / "vocab.yaml").write_text(spec)
    run_refused(
        config(
            vocab_dir, engine, overwrite=True, columns_file=str(data / "vocab.yaml")
        ),
        root,
        ValueError,
        "vocabulary file of column 'genre'",
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_foreign_non_empty_directory_is_refused_even_with_overwrite(workspace, engine):
    root, _, config = workspace
    thesis = root / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "chapters" / "one.tex").write_text("precious")
    (thesis / "notes.txt").write_text("also precious")
    run_refused(
        config(thesis, engine, overwrite=True),
        root,
        FileExistsError,
        r"'chapters/', 'notes.txt': not written by seqshards",
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_previous_output_with_a_foreign_file_is_refused(workspace, engine):
    root, _, config = workspace
    out = root / "out"
    driver.run(config(out, engine))
    (out / "shards" / "my-notes.txt").write_text("mine")
    run_refused(
        config(out, engine, overwrite=True), root, FileExistsError, "my-notes.txt"
    )


def test_a_json_that_is_not_our_metadata_is_foreign(workspace):
    root, _, config = workspace
    out = root / "out"
    out.mkdir()
    (out / "metadata.json").write_text(json.dumps({"title": "my thesis"}))
    run_refused(config(out, overwrite=True), root, FileExistsError, "metadata.json")


# --- allowed with --overwrite ---------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_previous_output_is_replaced(workspace, engine):
    root, _, config = workspace
    out = root / "out"
    first = driver.run(config(out, engine, num_shards=3)).metadata
    second = driver.run(config(out, engine, num_shards=2, overwrite=True)).metadata
    assert len(first["shards"]) == 3 and len(second["shards"]) == 2
    assert sorted(os.listdir(out / "shards")) == [
        "part-00000-of-00002.tfrecord",
        "part-00001-of-00002.tfrecord",
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_directory_is_used(workspace, engine):
    root, _, config = workspace
    out = root / "out"
    out.mkdir()
    md = driver.run(config(out, engine)).metadata
    assert md["counts"]["examples_written"] > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_interrupted_run_debris_is_replaced(workspace, engine):
    """What a run killed mid-commit on an object store leaves: part of our
    layout, no metadata.json, temporaries, the Beam job's pieces."""
    root, _, config = workspace
    out = root / "out"
    driver.run(config(out, engine))
    os.remove(out / "metadata.json")
    os.remove(out / "errors" / sorted(os.listdir(out / "errors"))[0])
    (out / "shards" / ".part-00000-of-00001.tfrecord.tmp-0123456789ab").write_bytes(
        b"partial"
    )
    (out / "_pieces").mkdir()
    (out / "_pieces" / "bundle-1").write_bytes(b"piece")
    md = driver.run(config(out, engine, overwrite=True)).metadata
    assert (out / "metadata.json").exists() and not (out / "_pieces").exists()
    assert md["counts"]["examples_written"] > 0


def test_foreign_entries_names_only_what_we_do_not_write(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "part-00000-of-00001.tfrecord").write_bytes(b"")
    (tmp_path / "shards" / "part-00000-of-00001.tfrecord.gz").write_bytes(b"")
    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / "corrupt_record.jsonl").write_text("")
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "user%2Fwatches_embedding.npy").write_bytes(b"")
    (tmp_path / "embeddings" / "sub").mkdir()
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "genre.txt").write_text("")
    (tmp_path / "README").write_text("")
    assert paths.foreign_entries(str(tmp_path)) == ["README", "embeddings/sub"]


# --- file names from the spec ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("watches_embedding", "watches_embedding"),
        ("user/watches_embedding", "user%2Fwatches_embedding"),
        ("../../../escape/watches", "%2E.%2F..%2F..%2Fescape%2Fwatches"),
        ("..", "%2E."),
        (".hidden", "%2Ehidden"),
        ("my key", "my%20key"),
        ("ключ", "%D0%BA%D0%BB%D1%8E%D1%87"),
        ("100%", "100%25"),
    ],
)
def test_safe_file_name(name, expected):
    safe = paths.safe_file_name(name)
    assert safe == expected
    assert urllib.parse.unquote(safe) == name  # reversible
    assert "/" not in safe and not safe.startswith(".")


def test_safe_file_name_of_a_long_name_is_bounded_and_distinct():
    a, b = "k" * 300 + "a", "k" * 300 + "b"
    assert len(paths.safe_file_name(a)) <= 200
    assert paths.safe_file_name(a) != paths.safe_file_name(b)
    with pytest.raises(ValueError, match="non-empty"):
        paths.safe_file_name("")


ODD_KEYS = ["user/watches", "../../../escape/watches", "my key ü"]


def odd_key_spec() -> str:
    columns = "\n".join(
        f"  - kind: embedding\n    dimension: 3\n"
        f"    categorical: {{kind: identity, key: {json.dumps(k)}, num_buckets: 20}}"
        for k in ODD_KEYS
    )
    return f"columns:\n{columns}\ncontext:\n  id: {{dtype: string}}\n"


def odd_key_records(n: int = 40) -> list[bytes]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        steps = int(rng.integers(1, 9))
        ex = tf.train.SequenceExample()
        ex.context.feature["id"].bytes_list.value.append(f"ex-{i}".encode())
        for key in ODD_KEYS:
            fl = ex.feature_lists.feature_list[key]
            for _ in range(steps):
                fl.feature.add().int64_list.value.append(int(rng.integers(0, 20)))
        out.append(ex.SerializeToString())
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_keys_with_slashes_dots_spaces_and_non_ascii_stay_inside_dir(tmp_path, engine):
    base = tmp_path / "base"
    (base / "in").mkdir(parents=True)
    (tmp_path / "escape").mkdir()  # where `..` would land, were it a path
    with tf.io.TFRecordWriter(str(base / "in" / "odd.tfrecord")) as w:
        for record in odd_key_records():
            w.write(record)
    (base / "in" / "columns.yaml").write_text(odd_key_spec())
    out = base / "o"
    config = JobConfig(
        input_pattern=str(base / "in" / "odd.tfrecord"),
        output_dir=str(out),
        columns_file=str(base / "in" / "columns.yaml"),
        batch_size=8,
        engine=engine,
        progress=False,
    )
    md = driver.run(config).metadata
    assert md["counts"]["examples_written"] == 40
    assert os.listdir(tmp_path / "escape") == []
    outside = {
        os.path.relpath(p, tmp_path)
        for p in glob.glob(f"{tmp_path}/**/*", recursive=True)
        if not os.path.abspath(p).startswith(str(out) + os.sep)
    }
    assert outside == {
        "base",
        "base/in",
        "base/in/odd.tfrecord",
        "base/in/columns.yaml",
        "base/o",
        "escape",
    }
    files = sorted(os.listdir(out / "embeddings"))
    assert files == sorted(
        paths.safe_file_name(f"{k}_embedding") + ".npy" for k in ODD_KEYS
    )
    assert md["embeddings"]["user/watches_embedding"] == (
        "embeddings/user%2Fwatches_embedding.npy"
    )
    for column, rel in md["embeddings"].items():
        assert np.load(out / rel).shape == (20, 3), column


def test_analyzed_vocabulary_names_are_safe_and_stats_json_is_reserved(tmp_path):
    base = tmp_path / "base"
    (base / "in").mkdir(parents=True)
    with tf.io.TFRecordWriter(str(base / "in" / "odd.tfrecord")) as w:
        for record in odd_key_records():
            w.write(record)

    def spec(path):
        return (
            "columns:\n  - kind: indicator\n    categorical:\n"
            "      kind: vocabulary_file\n      key: user/watches\n      dtype: int64\n"
            f"      path: {json.dumps(path)}\n      analyze: true\n"
            "context:\n  id: {dtype: string}\n"
        )

    (base / "in" / "columns.yaml").write_text(spec("vocab dir/user vocab ü.txt"))
    out = base / "o"
    config = JobConfig(
        input_pattern=str(base / "in" / "odd.tfrecord"),
        output_dir=str(out),
        columns_file=str(base / "in" / "columns.yaml"),
        batch_size=8,
        engine="tfdata",
        analyze=True,
        progress=False,
    )
    md = driver.run(config).metadata
    asset = "assets/user%20vocab%20%C3%BC.txt"
    assert asset in md["assets"] and (out / asset).is_file()
    (base / "in" / "columns.yaml").write_text(spec("stats.json"))
    with pytest.raises(ValueError, match="stats.json"):
        driver.run(dataclass_replace(config, output_dir=str(base / "o2")))


def dataclass_replace(config, **kw):
    import dataclasses

    return dataclasses.replace(config, **kw)
