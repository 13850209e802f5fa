"""Where the tfdata engine's processes start (`workers.ChunkWorkers`,
`shard_files.WriterProcess`): light to import, so that TensorFlow's start-up
lines can be kept off stderr.

Place in the flow: the processes are forked from a forkserver (`context`)
that imported their modules, TensorFlow included, once (`tfdata.preload`):
a process then starts in ~1 s instead of importing TensorFlow for ~4-5 s of
CPU (3 processes on 2 cores: ~15 CPU-s of start-up before). Its target
(`start`) imports the module it runs (already loaded) with file descriptor 2
on /dev/null, as the CLI does for its own process (`cli.tf_startup`), lists
the devices (TensorFlow's `cuInit` lines), puts stderr back, then calls the
function. An error of that import is printed once stderr is back.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import sys
import traceback

# What the engine's processes run (imported by the forkserver, `preload`).
MODULES = ("pipeline.tfdata.worker_loop", "pipeline.tfdata.shard_files")


def context():
    """The multiprocessing context of the engine's processes: a forkserver
    that preloads `MODULES` (quietly, `tfdata.preload`)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["pipeline.tfdata.preload"])
    return ctx


@contextlib.contextmanager
def quiet_stderr():
    """File descriptor 2 on /dev/null inside (TensorFlow's C++ start-up lines)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start(module: str, function: str, args: tuple, quiet: bool) -> None:
    """Imports `module` (quietly if `quiet`), then runs `module.function(*args)`."""
    try:
        with quiet_stderr() if quiet else contextlib.nullcontext():
            target = getattr(importlib.import_module(module), function)
            if quiet:
                import tensorflow as tf  # noqa: PLC0415 - imported by `module`

                tf.config.list_physical_devices()  # the cuInit lines come from here
    except BaseException:
        traceback.print_exc()  # stderr is back
        raise
    target(*args)
