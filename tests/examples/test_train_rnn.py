"""examples/train_rnn.py learns the sample's label from the materialized shards."""

import re

import pytest
from example_runs import held_out_accuracy, materialize_sample, run_example


def _run_example(*args):
    return run_example("train_rnn.py", *args)


@pytest.mark.slow
def test_example_beats_the_majority_baseline_on_held_out_batches(tmp_path):
    out = str(tmp_path / "out")
    materialize_sample(out)
    result = _run_example("--data", out)
    accuracy, baseline = held_out_accuracy(result)
    assert 0.5 <= baseline < 0.6
    assert accuracy >= baseline + 0.25  # ~0.94 vs 0.55 on the sample
    assert re.search(r"held-out: [\d,]+ examples", result.stdout)


def test_example_without_output_says_to_run_make_run(tmp_path):
    result = _run_example("--data", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "Run `make run` first" in result.stderr
