"""TensorFlow's start-up lines kept off the CLI's stderr.

Importing TensorFlow 2.21 prints 5-7 lines to stderr before a `seqshards`
command says anything (`WARNING: All log messages before absl::InitializeLog()
...`, oneDNN, `cudart_stub`, CPU features, `cuInit`). Most are written by C++
logging before absl is initialized, so `TF_CPP_MIN_LOG_LEVEL` does not hide
them: the only reliable way is to point file descriptor 2 at /dev/null while
TensorFlow loads and finds its devices, then restore it. Python errors raised
by the import still reach the user (as exceptions, after the restore).

A user who asks for TensorFlow's logs gets them untouched: `-v`, or an explicit
`TF_CPP_MIN_LOG_LEVEL` of 0 or 1.
"""

from __future__ import annotations

import os
import sys

_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


def import_tensorflow(verbosity: int = 0) -> None:
    """Imports TensorFlow (and lists its devices) without its start-up lines.

    Args:
      verbosity: The command's `-q`/`-v` level; >= 1 leaves stderr alone.
    """
    if "tensorflow" in sys.modules:
        return
    wants_logs = verbosity > 0 or os.environ.get(_LEVEL, "2") in ("0", "1")
    if wants_logs:
        import tensorflow  # noqa: F401

        return
    os.environ.setdefault(_LEVEL, "2")  # INFO/WARNING lines after start-up
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # the cuInit lines come from here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
