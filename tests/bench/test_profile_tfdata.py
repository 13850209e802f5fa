"""bench/profile_tfdata.py on a small dataset: every stage timed, the whole run split
by thread, and the bound printed."""

from bench_modules import load


def test_profile_times_each_stage_and_splits_the_run_by_thread(tmp_path, capsys):
    load("gen_data").write_dataset(
        str(tmp_path / "data"), num_examples=600, num_shards=2, seed=3
    )
    report = load("profile_tfdata").main(
        ["--input", str(tmp_path / "data" / "data-*.tfrecord")]
    )
    stages = ["lengths pass", "trace", "read", "validate", "features"]
    assert list(report["stages_cpu"]) == stages
    assert all(report["stages_wall"][s] > 0 for s in stages)
    assert report["wall"] > 0 and report["cpu"] > 0
    threads = report["threads"]
    # (A run this short ends some threads between two samples: only the main
    # thread is sure to be seen.) The sampler itself is not counted.
    assert threads["main thread"] > 0
    assert sum(threads.values()) <= report["cpu"] + 0.1
    assert not any("sampler" in group for group in threads)
    out = capsys.readouterr().out
    assert "600 valid records in 2 files" in out
    assert "| **whole run** (stages overlapped) |" in out
    assert "busy all the time the run would take" in out
