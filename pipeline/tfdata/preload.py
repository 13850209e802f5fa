"""Imported by the forkserver of the tfdata engine's processes
(`worker_start.context`): the modules they run, TensorFlow included, loaded
once there with TensorFlow's start-up lines off stderr; each process forked
from it starts with them loaded. An import error here is left to the process
that imports the module again (and reports it).
"""

import importlib

from pipeline.tfdata import worker_start

with worker_start.quiet_stderr():
    for _name in worker_start.MODULES:
        try:
            importlib.import_module(_name)
        except Exception:  # noqa: BLE001 - raised again, in the process
            pass
