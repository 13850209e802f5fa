"""The tfdata engine's chunking does not show in its output.

Records are read, validated and featurized in chunks, and examples wait for a
full batch in per-bucket growable buffers. Tiny chunks exercise every path on
the small dataset (batches made of many chunks, buffers growing and shifting,
several batches of a bucket completed by one chunk with the default size): the
bytes must equal a run with the default chunk size.
"""

import glob
import os

from pipeline_data import BATCH_SIZE

from pipeline import job, tfdata_engine
from pipeline.config import JobConfig


def _run(dataset, out):
    config = JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=str(out),
        columns_file=dataset["columns"],
        batch_size=BATCH_SIZE,
        engine="tfdata",
        progress=False,
    )
    return job.run(config, [])


def _dir_bytes(directory):
    out = {}
    for path in sorted(glob.glob(f"{directory}/**/*", recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def test_chunk_sizes_do_not_change_the_bytes(dataset, tmp_path, monkeypatch):
    default = _run(dataset, tmp_path / "default")
    monkeypatch.setattr(tfdata_engine, "_CHUNK", 7)
    small = _run(dataset, tmp_path / "small")
    assert small.metadata["counts"] == default.metadata["counts"]
    assert default.metadata["counts"]["batches"] > 3
    assert _dir_bytes(tmp_path / "small") == _dir_bytes(tmp_path / "default")
