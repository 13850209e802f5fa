"""seqshards pipeline: SequenceExample TFRecords -> padded, length-bucketed shards.

Data flow: read -> decode -> validate -> bucket -> features -> write -> metadata
(`pipeline.stages`), on Beam (`pipeline.beam`) or tf.data (`pipeline.tfdata`),
chosen by the driver (`pipeline.driver`); `pipeline.cli` is the command line,
`pipeline.reader` reads the output (TensorFlow), `pipeline.numpy_reader` too
(NumPy only, for JAX/PyTorch). The module map is pipeline/README.md.

The API:
  run(config, beam_argv=())          runs a job described by a `JobConfig`
  JobConfig                          the job's options (the CLI's flags)
  MaterializeSequenceFeatures        the job as a Beam PTransform
  load_dataset(dir), load_metadata(dir)   read what a run wrote
  iter_batches(dir)                  NumPy batches, no TensorFlow, no Beam

`import pipeline` stays light: each name imports what it needs on first use
(TensorFlow for `load_dataset`, `load_metadata` and `run`, Beam only for the
Beam engine and `MaterializeSequenceFeatures`, neither for `iter_batches`).
"""

from __future__ import annotations

import importlib

__all__ = [
    "JobConfig",
    "MaterializeSequenceFeatures",
    "iter_batches",
    "load_dataset",
    "load_metadata",
    "run",
]

# Lazily imported names: name -> module defining it.
_LAZY = {
    "JobConfig": "pipeline.stages.config",
    "MaterializeSequenceFeatures": "pipeline.beam.job",
}


def run(config, beam_argv=()):
    """Runs the job `config` (a `JobConfig`) and moves its output into place.

    Returns a `driver.RunResult` (metadata, Beam result or None, seconds); see
    `pipeline.driver.run`.
    """
    from pipeline import driver

    return driver.run(config, beam_argv)


def load_dataset(directory, shuffle_batches=False, seed=None):
    """See `pipeline.reader.load_dataset`."""
    from pipeline import reader

    return reader.load_dataset(directory, shuffle_batches=shuffle_batches, seed=seed)


def iter_batches(directory, shuffle=False, seed=None):
    """See `pipeline.numpy_reader.iter_batches` (no TensorFlow, no Beam)."""
    from pipeline import numpy_reader

    return numpy_reader.iter_batches(directory, shuffle=shuffle, seed=seed)


def load_metadata(directory):
    """See `pipeline.reader.load_metadata`."""
    from pipeline import reader

    return reader.load_metadata(directory)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
