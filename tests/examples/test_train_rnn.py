"""examples/train_rnn.py learns the sample's label from the materialized shards."""

import os
import re
import subprocess
import sys

import pytest
from repo_paths import ROOT  # noqa: E402

from pipeline import driver
from pipeline.stages import config

EXAMPLE = os.path.join(ROOT, "examples", "train_rnn.py")


def _run_example(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, EXAMPLE, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_example_beats_the_majority_baseline_on_held_out_batches(tmp_path):
    out = str(tmp_path / "out")
    driver.run(
        config.JobConfig(
            input_pattern=os.path.join(ROOT, "data", "sample-*.tfrecord"),
            output_dir=out,
            columns_file=os.path.join(ROOT, "data", "columns.yaml"),
            engine="tfdata",
            progress=False,
        )
    )
    result = _run_example("--data", out)
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(
        r"held-out accuracy ([\d.]+) \(majority baseline ([\d.]+)\)", result.stdout
    )
    assert match, result.stdout[-2000:]
    accuracy, baseline = float(match.group(1)), float(match.group(2))
    assert 0.5 <= baseline < 0.6
    assert accuracy >= baseline + 0.25  # ~0.94 vs 0.55 on the sample
    assert re.search(r"held-out: [\d,]+ examples", result.stdout)


def test_example_without_output_says_to_run_make_run(tmp_path):
    result = _run_example("--data", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "Run `make run` first" in result.stderr
