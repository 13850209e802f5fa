"""Guard: `--engine tfdata`, `seqshards stats` and `seqshards inspect` run
without importing `apache_beam` (each in a fresh interpreter; on object
stores: test_driver_object_store.py)."""

import os

import pytest
from beam_probe import beam_loaded
from repo_paths import ROOT

SAMPLE = os.path.join(ROOT, "data", "sample-*.tfrecord")
COLUMNS = os.path.join(ROOT, "data", "columns.yaml")


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
