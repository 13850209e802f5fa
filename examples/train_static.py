"""Train a jit-compiled Keras 3 model on static-shape shards (`--static_shapes`).

    make example-static      # materializes data/ into out_static/ with
                             # --static_shapes --max_buckets 8, then runs this

Compiled training (`jit_compile=True`: XLA; the JAX backend; TPUs) compiles
the step once per distinct input shape [B, T, D]. With `--static_shapes
--max_buckets K` the shards hold at most K distinct shapes, so the model
compiles at most K times, whatever the number of batches. The batches are read
with `pipeline.iter_batches` (NumPy only: no TensorFlow input pipeline, as a
JAX or PyTorch loop would) and fed through a `keras.utils.PyDataset`.

The model masks the padding (steps t >= sequence_length), averages the
present steps and puts a small MLP on top; `label` (1 when the user's mean
rating is > 3) is the target. Every `--val_every`-th batch is held out: the
accuracy printed at the end is on examples the model never trained on, beside
the majority-class rate of the same examples. The script also prints the
number of distinct input shapes it saw.
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
import training_flags  # noqa: E402
from keras import ops  # noqa: E402

import pipeline  # noqa: E402

INPUTS = ("sequence_input", "sequence_length")
DEFAULTS = training_flags.Defaults(
    "out_static", "make example-static", " with --static_shapes", 30, 0.01
)


def build_model(feature_dim: int, units: int = 32) -> keras.Model:
    """[B, T, D] + lengths [B] -> masked mean over steps -> MLP -> sigmoid.
    Backend-neutral (`keras.ops`): the same code runs on JAX."""
    x = keras.Input(shape=(None, feature_dim), name="sequence_input")
    n = keras.Input(shape=(), dtype="int64", name="sequence_length")

    def masked_mean(args):
        x, n = args
        steps = ops.arange(ops.shape(x)[1])
        mask = ops.cast(steps[None, :] < ops.cast(n, "int32")[:, None], x.dtype)
        total = ops.sum(x * mask[:, :, None], axis=1)
        return total / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)

    pooled = keras.layers.Lambda(masked_mean, name="masked_mean")([x, n])
    h = keras.layers.Dense(units, activation="relu", name="hidden")(pooled)
    y = keras.layers.Dense(1, activation="sigmoid", name="label")(h)
    return keras.Model({"sequence_input": x, "sequence_length": n}, y)


class Batches(keras.utils.PyDataset):
    """The materialized batches as they are (one shard record = one step)."""

    def __init__(self, batches: list, shuffle: bool = False, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self._batches, self._shuffle = batches, shuffle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(batches))

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: int):
        batch = self._batches[self._order[index]]
        inputs = {k: batch[k] for k in INPUTS}
        return inputs, batch["label"].astype("float32")

    def on_epoch_end(self) -> None:
        if self._shuffle:  # whole batches: each stays one length bucket
            self._order = self._rng.permutation(len(self._batches))


def main(argv=None) -> int:
    args = training_flags.parse_args(argv, __doc__.splitlines()[0], DEFAULTS)
    if args is None:
        return 2
    metadata = pipeline.load_metadata(args.data)
    static = metadata.get("static_shapes")
    if static is None or "label" not in metadata.get("context", {}):
        print(
            f"{args.data!r} was not written with --static_shapes, or has no context "
            "feature `label`: re-run seqshards with --static_shapes --max_buckets K.",
            file=sys.stderr,
        )
        return 2

    keras.utils.set_random_seed(args.seed)
    batches = list(pipeline.iter_batches(args.data))
    train = [b for i, b in enumerate(batches) if i % args.val_every != 0]
    val = [b for i, b in enumerate(batches) if i % args.val_every == 0]
    shapes = sorted({b["sequence_input"].shape for b in batches})
    model = build_model(metadata["feature_dim"], args.units)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        jit_compile=True,  # one XLA compilation per distinct input shape
    )
    start = time.time()
    model.fit(
        Batches(train, shuffle=True, seed=args.seed),
        validation_data=Batches(val),
        epochs=args.epochs,
        verbose=2,
    )
    seconds = time.time() - start
    labels = np.concatenate([b["label"] for b in val]).astype("float32")
    baseline = max(labels.mean(), 1.0 - labels.mean())
    _, accuracy = model.evaluate(Batches(val), verbose=0)
    bound = static["max_buckets"]
    print(
        f"distinct input shapes: {len(shapes)} "
        f"(max_buckets {bound if bound is not None else 'unbounded'}): "
        + ", ".join(str(list(s)) for s in shapes)
    )
    print(
        f"trained on {sum(len(b['label']) for b in train):,} examples in "
        f"{seconds:.1f} s; held-out: {len(labels):,} examples"
    )
    print(f"held-out accuracy {accuracy:.3f} (majority baseline {baseline:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
