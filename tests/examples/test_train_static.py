"""examples/train_static.py: a jit-compiled model on static-shape shards."""

import re

import pytest
from example_runs import held_out_accuracy, materialize_sample, run_example

MAX_BUCKETS = 8


def _run_example(*args):
    return run_example("train_static.py", *args)


@pytest.mark.slow
def test_static_example_sees_at_most_k_shapes_and_beats_the_baseline(tmp_path):
    out = str(tmp_path / "out_static")
    materialize_sample(out, static_shapes=True, max_buckets=MAX_BUCKETS)
    result = _run_example("--data", out, "--epochs", "15")
    assert result.returncode == 0, result.stderr[-3000:]
    shapes = re.search(
        r"distinct input shapes: (\d+) \(max_buckets (\d+)\)", result.stdout
    )
    assert shapes, result.stdout[-2000:]
    assert 2 <= int(shapes.group(1)) <= MAX_BUCKETS == int(shapes.group(2))
    accuracy, baseline = held_out_accuracy(result)
    assert 0.4 <= baseline < 0.65
    assert accuracy >= baseline + 0.25  # ~0.97 vs 0.51 on the sample


def test_static_example_refuses_dynamic_output_and_missing_dir(tmp_path):
    result = _run_example("--data", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "make example-static" in result.stderr
    dynamic = tmp_path / "dynamic"
    dynamic.mkdir()
    (dynamic / "metadata.json").write_text(
        '{"version": 1, "context": {"label": {}}, "feature_dim": 3}'
    )
    result = _run_example("--data", str(dynamic))
    assert result.returncode == 2
    assert "--static_shapes" in result.stderr
