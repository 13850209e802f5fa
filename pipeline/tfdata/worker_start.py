"""Where the tfdata engine's processes start (`workers.ChunkWorkers`,
`shard_files.WriterProcess`): light to import, so that TensorFlow's start-up
lines can be kept off stderr.

Place in the flow: a spawned process's target; it imports the module it runs
(and TensorFlow) with file descriptor 2 on /dev/null, as the CLI does for its
own process (`cli.tf_startup`), lists the devices (TensorFlow's `cuInit`
lines), puts stderr back, then calls the function. An error of that import
is printed once stderr is back.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback


def start(module: str, function: str, args: tuple, quiet: bool) -> None:
    """Imports `module` (quietly if `quiet`), then runs `module.function(*args)`."""
    if quiet:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    try:
        target = getattr(importlib.import_module(module), function)
        if quiet:
            import tensorflow as tf  # noqa: PLC0415 - imported by `module`

            tf.config.list_physical_devices()  # the cuInit lines come from here
    except BaseException:
        if quiet:
            os.dup2(saved, 2)
            quiet = False
        traceback.print_exc()
        raise
    finally:
        if quiet:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    target(*args)
