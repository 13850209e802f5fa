"""The scaling table (bench/scaling.py) and run_bench's 1-core / all-cores runs:
Amdahl's arithmetic, marginal rates, the table, taskset and the alternation."""

import json
import os
import subprocess
import sys

import pytest
from bench_modules import load

scaling = load("scaling")
run_bench = load("run_bench")


@pytest.mark.parametrize("speedup", [1.0, 1.25, 1.8, 2.0])
def test_parallel_fraction_on_two_cores_is_twice_one_minus_inverse(speedup):
    assert scaling.parallel_fraction(speedup, 2) == pytest.approx(2 * (1 - 1 / speedup))


def test_amdahl_projection_inverts_the_parallel_fraction():
    p = scaling.parallel_fraction(3.0, 4)  # 3x on 4 cores
    assert scaling.amdahl(100.0, p, 4) == pytest.approx(300.0)
    assert scaling.amdahl(100.0, 1.0, 64) == pytest.approx(6400.0)
    assert scaling.amdahl(100.0, -0.5, 16) == pytest.approx(100.0)  # clipped


def test_parallel_fraction_refuses_one_core():
    with pytest.raises(ValueError, match="cores >= 2"):
        scaling.parallel_fraction(1.5, 1)


def test_rate_is_marginal_between_sizes_else_n_over_seconds():
    rows = [{"n": 100, "seconds": 3.0}, {"n": 1000, "seconds": 12.0}]
    assert scaling.rate(rows) == (100.0, "marginal 100-1000")
    assert scaling.rate(rows[:1]) == (pytest.approx(100 / 3), "N=100")
    assert scaling.rate([{"n": 100, "error": "x"}]) == (None, "failed")


def _row(engine, cores, n, seconds):
    return {"engine": engine, "cores": cores, "n": n, "seconds": seconds}


def test_table_gives_speedup_p_projections_and_ratio_to_the_reference():
    rows = [
        _row("reference", 1, 10, 1.0), _row("reference", 1, 100, 10.0),
        _row("reference", 2, 10, 1.0), _row("reference", 2, 100, 5.5),
        _row("tfdata", 1, 10, 1.0), _row("tfdata", 1, 100, 5.5),
        _row("tfdata", 2, 10, 1.0), _row("tfdata", 2, 100, 4.6),
    ]  # fmt: skip
    text, lines = scaling.table(rows, 2)
    ref, ours = lines
    assert ref["rate_1"] == pytest.approx(10.0) and ref["rate_n"] == pytest.approx(20.0)
    assert ref["speedup"] == pytest.approx(2.0) and ref["p"] == pytest.approx(1.0)
    assert ref["projected"][16] == pytest.approx(160.0)
    assert ours["speedup"] == pytest.approx(25.0 / 20.0)
    assert ours["p"] == pytest.approx(0.4)
    assert ours["x_ref_1"] == pytest.approx(2.0)
    assert ours["x_ref_n"] == pytest.approx(25.0 / 20.0)
    assert "| tfdata | marginal 10-100 | 20 | 25 | 1.25x | 0.40 |" in text


def test_taskset_names_the_first_allowed_cpus():
    allowed = sorted(os.sched_getaffinity(0))
    assert run_bench.taskset(1) == ["taskset", "-c", str(allowed[0])]
    prefix = run_bench.taskset(len(allowed))
    assert prefix[2] == ",".join(map(str, allowed))
    out = subprocess.run([*run_bench.taskset(1), sys.executable, "-c",
                          "import os; print(len(os.sched_getaffinity(0)))"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "1"
    with pytest.raises(ValueError, match="cores"):
        run_bench.taskset(len(allowed) + 1)


def test_measure_scaling_alternates_core_counts_and_keeps_the_fastest(
    monkeypatch, tmp_path
):
    calls = []

    def fake(engine, n, data, work, timeout, keep, cores=None):
        calls.append((engine.name, n, cores))
        seconds = 2.0 + len(calls) / 10  # later runs slower: the first is kept
        return {"engine": engine.name, "n": n, "cores": cores, "seconds": seconds,
                "examples_per_s": n / seconds, "loadavg_before": 0.0}  # fmt: skip

    monkeypatch.setattr(run_bench, "measure_engine", fake)
    args = type("Args", (), {"repeat": 2, "timeout": 1.0, "keep_outputs": False})
    engines = [e for e in run_bench.ENGINES if e.name in ("reference", "tfdata")]
    rows = run_bench.measure_scaling(engines, {10: {}}, tmp_path, args)
    cores = len(os.sched_getaffinity(0))
    assert calls[:4] == [("reference", 10, 1), ("reference", 10, cores)] * 2
    assert [(r["engine"], r["cores"]) for r in rows] == [
        ("reference", 1), ("reference", cores), ("tfdata", 1), ("tfdata", cores)
    ]  # fmt: skip
    assert rows[0]["all_seconds"] == [2.1, 2.3]
    assert rows[0]["seconds"] == 2.1


@pytest.mark.slow
def test_scaling_only_run_writes_the_table_and_the_profile(tmp_path, capsys):
    """run_bench end to end on 300 examples: reference and tfdata, each on
    1 core and on all cores, then tfdata's profile by stage."""
    results = tmp_path / "latest.json"
    code = run_bench.main(["--sizes", "300", "--engines", "reference,tfdata",
                           "--scaling_only", "--num_shards", "2",
                           "--work_dir", str(tmp_path / "work"),
                           "--results", str(results)])  # fmt: skip
    assert code == 0
    report = json.loads(results.read_text())
    scaled = report["scaling"]
    cores = len(os.sched_getaffinity(0))
    assert [(r["engine"], r["cores"]) for r in scaled["rows"]] == [
        ("reference", 1), ("reference", cores), ("tfdata", 1), ("tfdata", cores)
    ]  # fmt: skip
    assert all("seconds" in r for r in scaled["rows"]), scaled["rows"]
    assert all(r["command"].startswith("taskset -c ") for r in scaled["rows"])
    assert [line["engine"] for line in scaled["lines"]] == ["reference", "tfdata"]
    assert scaled["lines"][0]["x_ref_1"] == pytest.approx(1.0)
    assert "| **whole run** (stages overlapped) |" in scaled["profile"]
    out = capsys.readouterr().out
    assert scaled["table"] in out and "Where tfdata's time goes, by stage" in out
