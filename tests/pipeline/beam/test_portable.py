"""The job on Beam's portable runner: a local job service + an EXTERNAL worker pool.

Proves the job runs on a runner that ships work to other processes (as Flink,
Spark and Dataflow do); its output is byte-identical to the in-process run.
"""

import os
import socket
import subprocess
import sys
import time

import pytest
from engine_runs import same_output
from pipeline_data import run_job as run
from repo_paths import ROOT  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited early with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listening on port {port}")


@pytest.mark.slow
def test_portable_runner_with_external_worker_pool(dataset, tmp_path):
    env = dict(os.environ)
    # The worker pool starts plain `python`: the venv must come first on PATH.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    job_port, pool_port = free_port(), free_port()
    logs = open(tmp_path / "services.log", "wb")
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "apache_beam.runners.portability.local_job_service_main",
                    "--port",
                    str(job_port),
                ],
                env=env,
                cwd=ROOT,
                stdout=logs,
                stderr=logs,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "apache_beam.runners.worker.worker_pool_main",
                    "--service_port",
                    str(pool_port),
                ],
                env=env,
                cwd=ROOT,
                stdout=logs,
                stderr=logs,
            )
        )
        wait_for_port(job_port, procs[0])
        wait_for_port(pool_port, procs[1])
        result = run(
            dataset,
            tmp_path / "portable",
            beam_argv=[
                "--runner",
                "PortableRunner",
                f"--job_endpoint=localhost:{job_port}",
                "--environment_type",
                "EXTERNAL",
                f"--environment_config=localhost:{pool_port}",
            ],
        )
        assert result.metadata["counts"]["examples_written"] == len(dataset["good"])
        run(dataset, tmp_path / "inprocess")
        # Byte-identical; metadata.json names the runner (all else is equal).
        runners = ("PortableRunner", "DirectRunner")
        same_output(tmp_path / "portable", tmp_path / "inprocess", runners)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logs.close()
