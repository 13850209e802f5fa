"""Train a small RNN on seqshards output: the model of the docs, in Keras 3.

    make run                             # writes out/ from the data/ sample
    python examples/train_rnn.py         # or: make example

Reads the padded, length-bucketed batches with `pipeline.load_dataset(DIR)`:
`sequence_input` float32 [B, T, D] and `sequence_length` int64 [B] go in, and
the context feature `label` (1 when the user's mean rating is > 3) is the
target. The model masks the padding with `tf.sequence_mask(sequence_length)`,
runs a SimpleRNN over the steps and a sigmoid unit on its last state.

Batches are split into train / validation by batch index (every
`--val_every`-th batch is held out), so the accuracy printed at the end is
measured on examples the model never trained on; the majority-class rate of
the same examples is printed beside it as the baseline.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Runnable from a fresh clone without installing: put the repository on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import training_flags  # noqa: E402

import pipeline  # noqa: E402

DEFAULTS = training_flags.Defaults("out", "make run", "", 15, 0.005)


def build_model(feature_dim: int, units: int = 32) -> keras.Model:
    """Input [None, None, D] + lengths -> SimpleRNN (masked) -> Dense(sigmoid)."""
    sequence_input = keras.Input(shape=(None, feature_dim), name="sequence_input")
    sequence_length = keras.Input(shape=(), dtype="int64", name="sequence_length")
    # T of a batch is its longest example, so the mask is [B, T] like the input.
    mask = keras.layers.Lambda(lambda n: tf.sequence_mask(n), name="sequence_mask")(
        sequence_length
    )
    state = keras.layers.SimpleRNN(units, name="rnn")(sequence_input, mask=mask)
    output = keras.layers.Dense(1, activation="sigmoid", name="label")(state)
    return keras.Model(
        inputs={"sequence_input": sequence_input, "sequence_length": sequence_length},
        outputs=output,
    )


def split(ds: tf.data.Dataset, num_batches: int, val_every: int):
    """(features, label) pairs; every `val_every`-th batch goes to validation."""

    def to_pair(batch):
        features = {k: batch[k] for k in ("sequence_input", "sequence_length")}
        return features, tf.cast(batch["label"], tf.float32)

    indexed = ds.enumerate()
    train = indexed.filter(lambda i, _: i % val_every != 0).map(lambda _, b: to_pair(b))
    val = indexed.filter(lambda i, _: i % val_every == 0).map(lambda _, b: to_pair(b))
    num_val = -(-num_batches // val_every)
    cardinality = tf.data.experimental.assert_cardinality  # Keras sees epoch ends
    return train.apply(cardinality(num_batches - num_val)), val.apply(
        cardinality(num_val)
    )


def main(argv=None) -> int:
    args = training_flags.parse_args(argv, __doc__.splitlines()[0], DEFAULTS)
    if args is None:
        return 2
    metadata = pipeline.load_metadata(args.data)
    if "label" not in metadata.get("context", {}):
        print(
            f"{args.data!r} has no context feature `label` to train on.",
            file=sys.stderr,
        )
        return 2

    keras.utils.set_random_seed(args.seed)
    num_batches = metadata["counts"]["batches"]
    train, val = split(pipeline.load_dataset(args.data), num_batches, args.val_every)
    train = train.cache().shuffle(256, seed=args.seed)  # shuffles whole batches
    val = val.cache()
    model = build_model(metadata["feature_dim"], args.units)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=1.0),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    start = time.time()
    # shuffle=False: the dataset already shuffles (whole batches, above).
    model.fit(train, validation_data=val, epochs=args.epochs, shuffle=False, verbose=2)
    seconds = time.time() - start

    labels = np.concatenate([y.numpy() for _, y in val])
    baseline = max(labels.mean(), 1.0 - labels.mean())
    _, accuracy = model.evaluate(val, verbose=0)
    _, train_accuracy = model.evaluate(train, verbose=0)
    print(
        f"trained on {metadata['counts']['examples_written'] - len(labels):,} examples "
        f"in {seconds:.1f} s; held-out: {len(labels):,} examples"
    )
    print(f"train accuracy {train_accuracy:.3f}")
    print(f"held-out accuracy {accuracy:.3f} (majority baseline {baseline:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
