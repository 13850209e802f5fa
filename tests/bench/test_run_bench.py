"""Tests for the benchmark harness (bench/run_bench.py, bench/measure.py); no engines run."""

import json
import os
import subprocess
import sys

from bench_modules import BENCH, load

run_bench = load("run_bench")


def _measure(tmp_path, body):
    target = tmp_path / "engine.py"
    target.write_text(body)
    result = tmp_path / "result.json"
    cmd = [
        sys.executable,
        str(BENCH / "measure.py"),
        "--result",
        str(result),
        "--target",
        str(target),
        "--preload",
        "",
        "--",
        "--flag",
        "x",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(result.read_text())


def test_measure_times_main_and_returns_its_metrics(tmp_path):
    code, report = _measure(
        tmp_path, "def main(argv):\n    return {'argv': argv, 'examples': 3}\n"
    )
    assert code == 0
    assert report["metrics"] == {"argv": ["--flag", "x"], "examples": 3}
    assert report["seconds"] >= 0
    assert report["maxrss_self_mb"] > 0


def test_measure_reports_the_first_line_of_an_engine_error(tmp_path):
    code, report = _measure(
        tmp_path, "def main():\n    raise ValueError('bad input\\nmore detail')\n"
    )
    assert code == 1
    assert report["error"] == "ValueError: bad input"
    assert "seconds" not in report


def test_tree_includes_the_process_and_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        pids = run_bench._tree(os.getpid())
        assert os.getpid() in pids and child.pid in pids
    finally:
        child.kill()
        child.wait()


def test_table_shows_ratios_to_the_reference_and_na_rows():
    rows = [
        {
            "engine": "reference",
            "runner": "-",
            "n": 10,
            "examples_per_s": 100.0,
            "mb_per_s_in": 1.0,
            "output_mb": 2.0,
            "padding_efficiency": 0.9,
            "cpu_seconds": 12.0,
            "peak_rss_mb": 50.0,
        },
        {
            "engine": "tfdata",
            "runner": "-",
            "n": 10,
            "examples_per_s": 250.0,
            "mb_per_s_in": 2.5,
            "output_mb": 1.9,
            "padding_efficiency": 0.985,
            "peak_rss_mb": 60.0,
        },
        {
            "engine": "beam",
            "runner": "DirectRunner",
            "n": 10,
            "error": "ImportError: x",
            "peak_rss_mb": None,
        },
    ]
    lines = run_bench.table(rows).splitlines()
    # engine, runner, N, examples/s, CPU-s, read amp, write amp, MB/s in,
    # output MB, padding eff., peak RSS MB, x reference
    assert lines[2].endswith("| 100 | 12.0 | - | - | 1.0 | 2 | 90.0 % | 50 | 1.00 |")
    assert lines[3].endswith("| 250 | - | - | - | 2.5 | 2 | 98.5 % | 60 | 2.50 |")
    assert "n/a: ImportError: x" in lines[4]


def test_measure_names_the_innermost_error_of_a_remote_traceback(tmp_path):
    body = (
        "def main():\n"
        "    raise RuntimeError('Traceback (most recent call last):\\n  File x\\n'\n"
        "                       'pipeline.metadata.AccountingError: mismatch 1 != 2')\n"
    )
    _, report = _measure(tmp_path, body)
    assert report["error"] == "pipeline.metadata.AccountingError: mismatch 1 != 2"


def test_count_tfrecords_walks_the_framing_and_rejects_truncation(tmp_path):
    gen_data = load("gen_data")
    path = tmp_path / "x.tfrecord"
    path.write_bytes(b"".join(gen_data.tfrecord_frame(b"a" * k) for k in (0, 5, 300)))
    assert run_bench.count_tfrecords(path) == 3
    path.write_bytes(path.read_bytes()[:-3])
    try:
        run_bench.count_tfrecords(path)
    except ValueError as e:
        assert "truncated" in str(e)
    else:
        raise AssertionError("truncation not detected")
