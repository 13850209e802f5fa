"""Guard: `--engine tfdata`, `seqshards stats` and `seqshards inspect` run
without importing `apache_beam` (each in a fresh interpreter)."""

import os
import subprocess
import sys

import pytest
from repo_paths import ROOT

SAMPLE = os.path.join(ROOT, "data", "sample-*.tfrecord")
COLUMNS = os.path.join(ROOT, "data", "columns.yaml")

# Runs the CLI's main on the arguments, then says whether Beam was imported.
WRAPPER = (
    "import sys\n"
    "from pipeline.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print('apache_beam loaded:', 'apache_beam' in sys.modules)\n"
    "sys.exit(code)\n"
)


def beam_loaded(args: list[str], cwd) -> bool:
    """Runs `seqshards ARGS` through WRAPPER; True if `apache_beam` was imported."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("apache_beam")]
    return line.endswith("True")


@pytest.mark.slow
def test_tfdata_engine_stats_and_inspect_do_not_import_beam(tmp_path):
    out = str(tmp_path / "out")
    job = ["--input", SAMPLE, "--columns", COLUMNS, "--output", out]
    assert not beam_loaded([*job, "--engine", "tfdata", "-q"], tmp_path)
    stats = ["stats", "--input", SAMPLE, "--columns", COLUMNS, "--no_plot", "-q"]
    assert not beam_loaded(stats, tmp_path)
    assert not beam_loaded(["inspect", out], tmp_path)
    # The wrapper does see Beam when it is used: the Beam engine.
    beam_out = str(tmp_path / "beam")
    assert beam_loaded([*job[:-1], beam_out, "-q"], tmp_path)
