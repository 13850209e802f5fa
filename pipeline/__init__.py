"""seqshards pipeline: SequenceExample TFRecords -> padded, length-bucketed shards.

Data flow: read -> decode -> validate -> bucket -> features -> write -> metadata,
on Beam (`job.py`) or tf.data (`tfdata_engine.py`); `reader.py` reads the output
(TensorFlow), `numpy_reader.py` too (`iter_batches`: NumPy only, for JAX/PyTorch).

`import pipeline` stays light: `load_dataset` / `load_metadata` import TensorFlow on
first use, `MaterializeSequenceFeatures` imports Beam on first use.
"""

__all__ = [
    "MaterializeSequenceFeatures",
    "iter_batches",
    "load_dataset",
    "load_metadata",
]


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
    if name == "MaterializeSequenceFeatures":
        from pipeline.job import MaterializeSequenceFeatures

        return MaterializeSequenceFeatures
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
