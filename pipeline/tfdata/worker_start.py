"""Where a worker process of the tfdata engine starts (`workers.ChunkWorkers`):
light to import, so that TensorFlow's start-up lines can be kept off stderr.

Place in the flow: the spawned process's target; it imports the engine's
stages (and TensorFlow) with file descriptor 2 on /dev/null, as the CLI does
for its own process (`cli.tf_startup`), then runs `worker_loop.serve`. An error of
that import is printed once stderr is back.
"""

from __future__ import annotations

import os
import sys
import traceback


def start(conn, slot_paths, slot_bytes: int, quiet: bool) -> None:
    """Imports the stages (quietly if `quiet`), then serves `conn`."""
    if quiet:
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    try:
        from pipeline.tfdata import worker_loop  # noqa: PLC0415 - TensorFlow here

        if quiet:
            worker_loop.list_devices()  # the cuInit lines come from here
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
    worker_loop.serve(conn, slot_paths, slot_bytes)
