"""What the training examples share: their flags and the check that DIR holds a run.

`train_rnn.py` and `train_static.py` import it (run as scripts, their
directory, examples/, is on `sys.path`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys


@dataclasses.dataclass(frozen=True)
class Defaults:
    """An example's defaults: its --data DIR, the make target that writes it
    (`writer`, with `how`: what that run does), --epochs, --learning_rate."""

    data: str
    writer: str
    how: str
    epochs: int
    learning_rate: float


def parse_args(argv, description: str, defaults: Defaults) -> argparse.Namespace | None:
    """--data, --epochs, --units, --val_every, --learning_rate and --seed; None,
    having said so on stderr, when --data holds no seqshards output (no
    metadata.json)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--data",
        default=defaults.data,
        help=f"A seqshards output directory (default: {defaults.data}, what "
        f"`{defaults.writer}` writes).",
    )
    for flag, kind, default in (
        ("--epochs", int, defaults.epochs),
        ("--units", int, 32),
        ("--val_every", int, 5),  # every N-th batch is held out for validation
        ("--learning_rate", float, defaults.learning_rate),
        ("--seed", int, 0),
    ):
        parser.add_argument(flag, type=kind, default=default)
    args = parser.parse_args(argv)
    if os.path.exists(os.path.join(args.data, "metadata.json")):
        return args
    print(
        f"No seqshards output in {args.data!r} (no metadata.json). Run "
        f"`{defaults.writer}` first (it writes {defaults.data}/ from the data/ "
        f"sample{defaults.how}), or pass --data DIR.",
        file=sys.stderr,
    )
    return None
