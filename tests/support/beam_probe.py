"""Runs the `seqshards` CLI in a fresh interpreter and says whether it imported
`apache_beam` (the guard of the Beam-free paths: the tfdata engine, `stats`,
`inspect`, on local disks and object stores alike)."""

import os
import subprocess
import sys

from repo_paths import ROOT

# Runs the CLI's main on the arguments, then says whether Beam was imported.
WRAPPER = (
    "import sys\n"
    "from pipeline.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print('apache_beam loaded:', 'apache_beam' in sys.modules)\n"
    "sys.exit(code)\n"
)


def beam_loaded(args: list[str], cwd, env: dict | None = None) -> bool:
    """Runs `seqshards ARGS` through WRAPPER (with `env` added to the
    environment, e.g. an emulator's address); True if `apache_beam` was
    imported. The run must succeed."""
    env = dict(os.environ, **(env or {}), PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("apache_beam")]
    return line.endswith("True")
