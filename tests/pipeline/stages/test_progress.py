"""Progress lines (steady rate, records/s, ETA), -q / -v, both engines' CLI output."""

import logging
import re

import pytest

from pipeline.cli.main import main, parse_args
from pipeline.stages import progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", fake)
    return fake


def test_lines_come_at_most_every_interval_with_rate_and_eta(clock, caplog):
    caplog.set_level(logging.INFO, logger="seqshards")
    p = progress.Progress("read", total_bytes=1000, interval=2.0)
    for _ in range(10):  # 10 chunks in 1 s: no line yet
        clock.now += 0.1
        p.add(10, 25)
    assert caplog.messages == []
    clock.now += 1.5  # 2.5 s elapsed: one line
    p.add(100, 250)
    clock.now += 0.5
    p.add(100, 250)  # 3.0 s, too soon after the last line
    assert caplog.messages == [
        "read: 200 records, 80 records/s, 2.5 s elapsed, 50 % of input, ETA 2.5 s"
    ]
    clock.now += 2.0
    p.add(0, 0)
    assert caplog.messages[-1] == (
        "read: 300 records, 60 records/s, 5.0 s elapsed, 75 % of input, ETA 1.7 s"
    )
    p.done()
    assert caplog.messages[-1] == "read: 300 records in 5.0 s (60 records/s), done"
    assert len(caplog.messages) == 3


def test_no_eta_without_input_size_and_long_durations(clock, caplog):
    caplog.set_level(logging.INFO, logger="seqshards")
    p = progress.Progress("features", unit="examples")
    clock.now += 3725
    p.add(7450)
    assert caplog.messages == ["features: 7,450 examples, 2 examples/s, 1h02m elapsed"]


def test_verbosity_flags():
    assert progress.verbosity_of([]) == 0
    assert progress.verbosity_of(["--input", "x", "-q"]) == -1
    assert progress.verbosity_of(["-v"]) == 1 and progress.verbosity_of(["-vv"]) == 2
    assert progress.verbosity_level(-1) == logging.WARNING
    assert progress.verbosity_level(0) == logging.INFO
    assert progress.verbosity_level(1) == logging.DEBUG
    base = ["--input", "i", "--output", "o", "--columns", "c.yaml"]
    assert parse_args(base)[0].progress
    assert not parse_args([*base, "--quiet"])[0].progress
    assert not parse_args([*base, "--no_progress"])[0].progress
    assert parse_args([*base, "-v"])[1] == []  # not passed on to Beam
    with pytest.raises(SystemExit):
        parse_args([*base, "-q", "-v"])


def _run(dataset, tmp_path, *flags):
    return main(
        [
            "--input",
            dataset["pattern"],
            "--columns",
            dataset["columns"],
            "--output",
            str(tmp_path / "o"),
            "--batch_size",
            "16",
            *flags,
        ]
    )


@pytest.mark.parametrize(
    "engine, stages",
    [("tfdata", ("lengths pass", "materialize")), ("beam", ("read", "features"))],
)
def test_cli_progress_lines_and_summary(dataset, tmp_path, capsys, engine, stages):
    assert _run(dataset, tmp_path, "--engine", engine) == 0
    captured = capsys.readouterr()
    for stage in stages:
        unit = "examples" if stage == "features" else "records"
        assert re.search(rf"^{stage}: [\d,]+ {unit} in [\d.]+ s \(", captured.err, re.M)
    if engine == "tfdata":  # both passes see every record
        assert "materialize: 303 records in" in captured.err
    else:  # read counts the well-framed records, features the written examples
        assert "read: 301 records in" in captured.err
        assert "features: 290 examples in" in captured.err
        # Timed from the job's start: the in-process bundle-based runner hands
        # the side branch a step's whole output at once (0.0 s before).
        read = re.search(r"^read: 301 records in ([\d.]+) s", captured.err, re.M)
        assert float(read.group(1)) > 0
    assert (
        "seqshards summary" in captured.out and "seqshards summary" not in captured.err
    )


def test_quiet_prints_only_the_summary(dataset, tmp_path, capsys):
    assert _run(dataset, tmp_path, "--engine", "tfdata", "-q") == 0
    captured = capsys.readouterr()
    assert "records" not in captured.err
    assert re.search(r"examples written +290 ", captured.out)


def test_verbose_logs_at_debug(dataset, tmp_path, capsys):
    assert _run(dataset, tmp_path, "--engine", "tfdata", "-v") == 0
    assert logging.getLogger("seqshards").level == logging.DEBUG
    err = capsys.readouterr().err
    assert re.search(r"seqshards: materialize: 303 records in", err)
    progress.configure_logging(0)
