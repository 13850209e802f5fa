"""Helpers of the examples/ tests: materialize the sample, run an example script."""

import os
import re
import subprocess
import sys

from repo_paths import ROOT

from pipeline import driver
from pipeline.stages import config


def materialize_sample(out: str, **options) -> None:
    """data/sample-*.tfrecord -> `out` with the tfdata engine (JobConfig options)."""
    driver.run(
        config.JobConfig(
            input_pattern=os.path.join(ROOT, "data", "sample-*.tfrecord"),
            output_dir=out,
            columns_file=os.path.join(ROOT, "data", "columns.yaml"),
            engine="tfdata",
            progress=False,
            **options,
        )
    )


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    """Runs examples/`name` with `args` in a subprocess."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def held_out_accuracy(result: subprocess.CompletedProcess) -> tuple[float, float]:
    """(accuracy, majority baseline) an example printed on its held-out
    batches, once it exited 0."""
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(
        r"held-out accuracy ([\d.]+) \(majority baseline ([\d.]+)\)", result.stdout
    )
    assert match, result.stdout[-2000:]
    return float(match.group(1)), float(match.group(2))
