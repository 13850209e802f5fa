"""The public API (`pipeline/__init__.py`): what users call, imported lazily."""

import os
import subprocess
import sys

from pipeline_data import BATCH_SIZE, run_job
from repo_paths import ROOT

import pipeline
from pipeline import driver
from pipeline.beam.job import MaterializeSequenceFeatures
from pipeline.stages.config import JobConfig

# What users call, sorted (written out here, not taken from `__all__`).
API = (
    "JobConfig MaterializeSequenceFeatures iter_batches load_dataset load_metadata run"
).split()


def test_all_and_dir_name_the_api():
    assert sorted(pipeline.__all__) == API
    assert dir(pipeline) == API
    assert pipeline.JobConfig is JobConfig
    assert pipeline.MaterializeSequenceFeatures is MaterializeSequenceFeatures


def test_import_pipeline_loads_neither_tensorflow_nor_beam():
    code = (
        "import sys, pipeline\n"
        "print(sorted(m for m in ('tensorflow', 'apache_beam') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_run_runs_a_job_from_a_job_config(dataset, tmp_path, monkeypatch):
    calls = []
    original = driver.run

    def spy(config, beam_argv=()):
        calls.append(config)
        return original(config, beam_argv)

    monkeypatch.setattr(driver, "run", spy)
    config = JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=str(tmp_path / "api"),
        columns_file=dataset["columns"],
        batch_size=BATCH_SIZE,
        engine="tfdata",
        progress=False,
    )
    result = pipeline.run(config)
    assert calls == [config]
    md = pipeline.load_metadata(str(tmp_path / "api"))
    assert result.metadata == md and md["engine"] == "tfdata"
    direct = run_job(dataset, tmp_path / "direct", engine="tfdata")
    assert direct.metadata == md
