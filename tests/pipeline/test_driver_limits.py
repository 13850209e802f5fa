"""--max_sequence_length / --on_long and --on_invalid."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
from bad_inputs import CATALOG_YAML, LONG_STEPS, frame, long_record, record

import pipeline
from pipeline import driver
from pipeline.cli.main import main, parse_args
from pipeline.stages.config import JobConfig
from pipeline.stages.validate import InvalidRecordError

LIMIT = 1000


@pytest.fixture(scope="module")
def long_input(tmp_path_factory):
    directory = tmp_path_factory.mktemp("long")
    (directory / "columns.yaml").write_text(CATALOG_YAML)
    records = [record(f"g{i:02d}", 1 + i % 5) for i in range(20)]
    records.insert(7, long_record("long"))  # position (0, 7)
    records.append(record("one", 1))  # the long record's step, once
    (directory / "in.tfrecord").write_bytes(b"".join(frame(r) for r in records))
    return directory


def config(directory, out, **kw):
    kw.setdefault("progress", False)
    return JobConfig(
        input_pattern=str(directory / "in.tfrecord"),
        output_dir=str(out),
        columns_file=str(directory / "columns.yaml"),
        batch_size=8,
        **kw,
    )


def rows(out):
    found = {}
    for batch in pipeline.load_dataset(str(out)):
        for x, n, ident in zip(
            batch["sequence_input"].numpy(),
            batch["sequence_length"].numpy(),
            batch["id"].numpy(),
            strict=True,
        ):
            found[ident] = x[:n]
    return found


@pytest.mark.parametrize("engine", ["tfdata", "beam"])
def test_truncate_keeps_the_first_n_steps(engine, long_input, tmp_path):
    result = driver.run(
        config(
            long_input,
            tmp_path / "out",
            engine=engine,
            max_sequence_length=LIMIT,
            on_long="truncate",
        )
    )
    counts = result.metadata["counts"]
    assert counts["examples_written"] == counts["examples_in"] == 22
    assert counts["truncated"] == 1 and counts["truncated_positions"] == [[0, 7]]
    got = rows(tmp_path / "out")
    assert got[b"long"].shape[0] == LIMIT
    # Every step of the long record equals the 1-step record "one".
    np.testing.assert_allclose(got[b"long"], np.repeat(got[b"one"], LIMIT, axis=0))


def test_dead_letter_is_the_default_and_no_limit_is_the_default():
    cfg, _ = parse_args(["--input", "i", "--output", "o", "--columns", "c.yaml"])
    assert cfg.max_sequence_length is None and cfg.on_long == "dead_letter"
    assert cfg.on_invalid == "dead_letter"
    cfg, _ = parse_args(
        ["--input", "i", "--output", "o", "--columns", "c.yaml"]
        + ["--max_sequence_length", "50", "--on_long", "truncate"]
        + ["--on_invalid", "fail"]
    )
    assert (cfg.max_sequence_length, cfg.on_long, cfg.on_invalid) == (
        50,
        "truncate",
        "fail",
    )
    for bad in (
        dict(max_sequence_length=0),
        dict(on_long="drop"),
        dict(on_invalid="ignore"),
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            JobConfig("i", "o", "c.yaml", **bad)


@pytest.mark.parametrize("engine", ["tfdata", "beam"])
@pytest.mark.parametrize(
    "bad, reason",
    [
        (record("nan", 2, lists={"rating": [[1.0], [float("nan")]]}), "non_finite"),
        (record("id", 2, lists={"watches": [[3], [99]]}), "id_out_of_range"),
    ],
    ids=["nan", "id"],
)
def test_on_invalid_fail_names_the_first_record_and_leaves_no_output(
    engine, bad, reason, tmp_path
):
    (tmp_path / "columns.yaml").write_text(CATALOG_YAML)
    records = [record(f"g{i}") for i in range(30)]
    records[12] = bad
    records[20] = bad
    path = tmp_path / "in.tfrecord"
    path.write_bytes(b"".join(frame(r) for r in records))
    out = tmp_path / "out"
    with pytest.raises(InvalidRecordError) as info:
        driver.run(
            JobConfig(
                str(path),
                str(out),
                str(tmp_path / "columns.yaml"),
                engine=engine,
                on_invalid="fail",
                progress=False,
            )
        )
    message = str(info.value)
    assert f"({reason}) at file {str(path)!r}, record 12" in message
    assert "--on_invalid dead_letter" in message
    assert not out.exists() and not glob.glob(f"{out}.staging-*")


def test_on_invalid_fail_from_the_cli(tmp_path, capsys):
    (tmp_path / "columns.yaml").write_text(CATALOG_YAML)
    bad = record("nan", 2, lists={"rating": [[1.0], [float("inf")]]})
    (tmp_path / "in.tfrecord").write_bytes(frame(record("a")) + frame(bad))
    argv = ["--input", str(tmp_path / "in.tfrecord"), "--output", str(tmp_path / "o")]
    argv += ["--columns", str(tmp_path / "columns.yaml"), "--on_invalid", "fail"]
    assert main(argv + ["--engine", "tfdata", "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "seqshards: error: Invalid record (non_finite) at file" in err
    assert "record 1" in err and not (tmp_path / "o").exists()


def _peak_rss_mib(args) -> float:
    """Runs the CLI in a child; returns the child's peak RSS in MiB."""
    code = (
        "import resource, sys\n"
        "from pipeline.__main__ import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("RSS")][-1]
    return int(line.split()[1]) / 1024


@pytest.mark.slow
def test_memory_stays_bounded_with_a_1e6_step_record(long_input, tmp_path):
    """Peak RSS with the 1e6-step record (truncated) vs without it: the extra is a
    few copies of its bytes, not a [B, 1e6, D] tensor (8 x 1e6 x 14 floats would
    be 448 MiB for its batch alone, and more for the intermediates)."""
    size_mib = len(long_record("long")) / 2**20
    (tmp_path / "small.tfrecord").write_bytes(
        b"".join(frame(record(f"g{i:02d}", 1 + i % 5)) for i in range(20))
    )
    common = ["--columns", str(long_input / "columns.yaml"), "--engine", "tfdata"]
    common += ["--batch_size", "8", "--no_progress", "-q"]
    base = _peak_rss_mib(
        ["--input", str(tmp_path / "small.tfrecord"), "--output", str(tmp_path / "a")]
        + common
    )
    with_long = _peak_rss_mib(
        ["--input", str(long_input / "in.tfrecord"), "--output", str(tmp_path / "b")]
        + common
        + ["--max_sequence_length", str(LIMIT), "--on_long", "truncate"]
    )
    extra = with_long - base
    print(f"peak RSS {base:.0f} -> {with_long:.0f} MiB; record {size_mib:.0f} MiB")
    assert extra < 6 * size_mib, (base, with_long, size_mib)
    assert LONG_STEPS == 1_000_000
