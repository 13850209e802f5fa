"""The bad-input catalog (issue 4): every named case and its documented outcome.

Record and framing cases: ONE tfdata run and ONE Beam run over the catalog input
(`bad_inputs.write_catalog`: every bad record between good ones), then each case
is checked through errors/ (by file and record index), the shards (by example id)
and metadata.json. Job cases: `driver.run` must raise before any work starts, naming
the file and what to do, and leave no output. Table: README.md, "Bad-input catalog".
"""

import base64
import collections
import glob
import json
import os

import numpy as np
import pytest
from bad_inputs import (
    ALL_CASE_NAMES,
    CATALOG_YAML,
    FRAMING_CASES,
    JOB_CASES,
    LAYOUT_CASES,
    MAX_LENGTH,
    RECORD_CASES,
    WRITTEN,
    frame,
    record,
    write_catalog,
)

import pipeline
from pipeline import driver
from pipeline.beam import job
from pipeline.cli.main import main
from pipeline.stages.config import JobConfig
from pipeline.tfdata import engine as tfdata_engine

ENGINES = ["tfdata", "beam"]
RECORD_LEVEL = [c.name for c in RECORD_CASES + FRAMING_CASES + LAYOUT_CASES]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    directory = tmp_path_factory.mktemp("catalog")
    facts = write_catalog(directory)
    (directory / "columns.yaml").write_text(CATALOG_YAML)
    runs = {}
    for engine in ENGINES:
        out = directory / f"out-{engine}"
        result = driver.run(
            JobConfig(
                input_pattern=str(directory / "catalog-*.tfrecord"),
                output_dir=str(out),
                columns_file=str(directory / "columns.yaml"),
                batch_size=16,
                engine=engine,
                max_sequence_length=MAX_LENGTH,
                progress=False,
            )
        )
        runs[engine] = {
            "metadata": result.metadata,
            "errors": _errors(out),
            "rows": _rows(out),
            "dir": out,
        }
    return facts, runs


def _errors(out):
    entries = {}
    for path in glob.glob(f"{out}/errors/*.jsonl"):
        for line in open(path):
            e = json.loads(line)
            assert os.path.basename(path) == f"{e['reason']}.jsonl"
            key = (os.path.basename(e["file"]), e["record_index"])
            assert key not in entries  # each input record at most once
            entries[key] = e
    return entries


def _rows(out):
    rows = collections.defaultdict(list)
    for batch in pipeline.load_dataset(str(out)):
        x = batch["sequence_input"].numpy()
        for row, length, ident in zip(
            x, batch["sequence_length"].numpy(), batch["id"].numpy(), strict=True
        ):
            rows[ident].append((int(length), row[: int(length)]))
    return rows


def test_the_catalog_has_at_least_25_named_cases():
    assert len(ALL_CASE_NAMES) >= 25
    assert len(set(ALL_CASE_NAMES)) == len(ALL_CASE_NAMES)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", RECORD_LEVEL)
def test_record_case_outcome(case, engine, catalog):
    facts, runs = catalog
    run = runs[engine]
    items = [(k, v) for k, v in facts.expected.items() if v[0] == case]
    if case == "empty_file":
        files = run["metadata"]["input"]["files"]
        assert files[2]["path"].endswith("catalog-00002.tfrecord")
        assert files[2]["records"] == 0
        assert not [k for k in run["errors"] if k[0] == "catalog-00002.tfrecord"]
        return
    assert items, case
    for (file, index), (_, outcome, data) in items:
        error = run["errors"].get((file, index))
        if outcome == WRITTEN:
            assert error is None, (case, error)
            (ident,) = _context_ids(data)
            assert len(run["rows"][ident]) == 1, case  # written exactly once
            continue
        assert error is not None, (case, file, index)
        assert error["reason"] == outcome, (case, error["detail"])
        assert error["detail"]
        got = base64.b64decode(error["data_b64"])
        if case == "flipped_length_header":
            assert got == data[: len(got)]  # the skipped stretch
        elif case == "flipped_data_byte":
            assert got == data[12:-4]  # the damaged payload
        else:
            assert got == data  # the original bytes, kept
    if case == "tf_example_instead":
        assert "tf.train.Example" in error["detail"]
    if case == "long_sequence_1e6":
        assert f"--max_sequence_length {MAX_LENGTH}" in error["detail"]
    if case.startswith("duplicate_id"):
        assert "already at file" in error["detail"]


def _context_ids(data):
    import tensorflow as tf

    ex = tf.train.SequenceExample.FromString(data)
    return list(ex.context.feature["id"].bytes_list.value)


@pytest.mark.parametrize("engine", ENGINES)
def test_accounting_is_exact_and_metadata_names_positions(engine, catalog):
    facts, runs = catalog
    md = runs[engine]["metadata"]
    counts = md["counts"]
    assert counts["examples_in"] == facts.examples_in
    assert counts["examples_written"] + counts["errors_total"] == counts["examples_in"]
    outcomes = collections.Counter(v[1] for v in facts.expected.values())
    assert counts["examples_written"] == outcomes.pop(WRITTEN)
    assert counts["errors"] == dict(outcomes)
    files = [os.path.basename(f["path"]) for f in md["input"]["files"]]
    by_reason = collections.defaultdict(list)
    for (file, index), (_, outcome, _) in facts.expected.items():
        if outcome != WRITTEN:
            by_reason[outcome].append([files.index(file), index])
    assert counts["error_positions"] == {
        reason: sorted(positions)[:10] for reason, positions in by_reason.items()
    }
    assert counts["truncated"] == 0
    # Every good filler record written exactly once, nothing else.
    assert set(runs[engine]["rows"]) == set(facts.good) | {
        i
        for v in facts.expected.values()
        if v[1] == WRITTEN
        for i in _context_ids(v[2])
    }
    assert all(len(v) == 1 for v in runs[engine]["rows"].values())


def test_both_engines_give_the_same_outcomes(catalog):
    _, runs = catalog
    a, b = runs["tfdata"], runs["beam"]
    assert {k: e["reason"] for k, e in a["errors"].items()} == {
        k: e["reason"] for k, e in b["errors"].items()
    }
    assert set(a["rows"]) == set(b["rows"])
    for ident, [(length, row)] in a["rows"].items():
        [(length_b, row_b)] = b["rows"][ident]
        assert length == length_b
        np.testing.assert_allclose(row, row_b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_non_utf8_vocabulary_value_is_a_vocabulary_miss(engine, catalog):
    _, runs = catalog
    md = runs[engine]["metadata"]
    slot = next(c for c in md["columns"] if c["name"] == "genre_indicator")
    [(length, row)] = runs[engine]["rows"][b"non-utf8-vocab"]
    genre = row[:, slot["offset"] : slot["offset"] + slot["width"]]
    assert length == 2
    assert not genre[0].any()  # b"\xff\xfe": no vocabulary id -> zero indicator
    assert genre[1].tolist() == [0, 0, 1, 0]  # drama


# --- job-level cases: refused before any work ------------------------------------------


@pytest.fixture
def no_work(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(job, "build", started)
    monkeypatch.setattr(tfdata_engine, "run", started)


@pytest.fixture
def base(tmp_path):
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    (good_dir / "in.tfrecord").write_bytes(frame(record("a")))
    (good_dir / "columns.yaml").write_text(CATALOG_YAML)
    return dict(
        input_pattern=str(good_dir / "in.tfrecord"),
        output_dir=str(tmp_path / "out"),
        columns_file=str(good_dir / "columns.yaml"),
        progress=False,
    )


@pytest.mark.parametrize("case", sorted(JOB_CASES))
def test_job_case_is_refused_before_any_work(case, tmp_path, base, no_work):
    setup, error, fragments = JOB_CASES[case]
    if case == "unreadable_input_permissions" and os.geteuid() == 0:
        pytest.skip("root reads chmod 000 files (the directory/symlink cases fail)")
    kwargs = setup(tmp_path, base)
    before = set(os.listdir(tmp_path))
    with pytest.raises(error) as info:
        driver.run(JobConfig(**kwargs))
    for fragment in fragments:
        assert fragment in str(info.value), (case, str(info.value))
    after = set(os.listdir(tmp_path))
    assert after == before  # no output, no staging directory
    assert not glob.glob(f"{kwargs['output_dir']}.staging-*")


@pytest.mark.parametrize(
    "case", ["glob_matching_no_file", "columns_yaml_bad_value", "output_is_a_file"]
)
def test_cli_prints_the_error_and_exits_2(case, tmp_path, base, capsys):
    setup, _, fragments = JOB_CASES[case]
    kwargs = setup(tmp_path, base)
    argv = ["--input", kwargs["input_pattern"], "--output", kwargs["output_dir"]]
    argv += ["--columns", kwargs["columns_file"], "--no_progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqshards: error: ") and fragments[0] in err


def test_metadata_unknown_version_is_refused(tmp_path):
    (tmp_path / "metadata.json").write_text(json.dumps({"version": 99}))
    for load in (pipeline.load_metadata, pipeline.load_dataset):
        with pytest.raises(ValueError, match="Unsupported seqshards metadata version"):
            load(str(tmp_path))
