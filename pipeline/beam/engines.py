"""Defaults that make `--runner FlinkRunner` / `SparkRunner` run on this machine.

Place in the flow: cli -> driver -> **beam.engines** (Beam argv in, Beam argv
out) -> the Beam job and analyze pass -> Beam's portable runners. The driver
passes the Beam argv of every Beam run through `with_engine_defaults` before
any work (for runners other than Flink and Spark it is unchanged), and
`beam.job` records `runner_name` in metadata.json. Imports no Beam.

With no further flags the job runs on the engine embedded in Beam's job server
(a Flink MiniCluster, a Spark `local[2]` context), started from the jar
`make runners` fetched into .runners/, with 2 task slots, and 2 Python SDK
workers started by the engine as separate processes (Beam's PROCESS
environment) running the interpreter that runs this code (`sys.executable`,
no PATH lookup; `pipeline.beam.process_worker` is their entry point). Flink restarts
the tasks a dead worker failed (up to `FLINK_RETRIES` times, backing off until
the dead worker's cache entry expired, `ENVIRONMENT_EXPIRATION_MILLIS`); Spark's
`local[2]` does not retry a task, so the job fails and leaves no output.

Every default is a Beam flag and only added when absent: each can be overridden
with Beam's own flag. A cluster master (`--flink_master=host:8081`,
`--spark_master_url=spark://...`) is used as is, with nothing added but the
fetched jar: the cluster's workers need their own environment (DOCKER with an
image that has seqshards installed, or EXTERNAL / PROCESS set up there).
"""

from __future__ import annotations

import atexit
import functools
import json
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Sequence

# What tools/fetch_runners.py writes, under RUNNERS_DIR.
RUNNERS_DIR = pathlib.Path(__file__).resolve().parents[2] / ".runners"
JOB_SERVER_JARS = {"flink": "flink-job-server.jar", "spark": "spark-job-server.jar"}
# `--runner` values (lower-cased) -> engine.
ENGINES = {
    "flinkrunner": "flink",
    "flink": "flink",
    "apache_beam.runners.portability.flink_runner.flinkrunner": "flink",
    "sparkrunner": "spark",
    "spark": "spark",
    "apache_beam.runners.portability.spark_runner.sparkrunner": "spark",
}
RUNNER_NAMES = {"flink": "FlinkRunner", "spark": "SparkRunner"}
MASTER_FLAGS = {"flink": "flink_master", "spark": "spark_master_url"}
JAR_FLAGS = {"flink": "flink_job_server_jar", "spark": "spark_job_server_jar"}
LOCAL_PARALLELISM = 2
# Spark's `local[N]` tries a task once: a killed worker fails the job, cleanly.
# `local[N,F]` (F tries) is no cure: Spark retries at once, and every try went to
# the dead worker until its cache entry expired (1 of 2 runs recovered).
LOCAL_MASTERS = {"flink": "[local]", "spark": f"local[{LOCAL_PARALLELISM}]"}
FLINK_RETRIES = 10
FLINK_MAX_BACKOFF_S = 10
# Keep each SDK worker for the whole job: without it the engine starts new worker
# processes (each importing TensorFlow, ~5 s) for every stage (the sample on
# Flink: 9 processes, 118 s, vs 2 processes, 29 s).
ENVIRONMENT_CACHE_MILLIS = 3_600_000
# ...but replace a worker 30 s after it started, at the next stage that asks for
# one: a killed worker's entry is never evicted otherwise, and every restart of
# the failed tasks would be sent to it again (seen: 10 of 10 restarts failed).
# Flink's restarts back off up to FLINK_MAX_BACKOFF_S, FLINK_RETRIES times
# (~75 s in all), which outlasts it; Spark's immediate task retries do not.
ENVIRONMENT_EXPIRATION_MILLIS = 30_000
# The job server's JVM on the local engine: only the C1 compiler and the serial
# collector. Its work here is short and light (the SDK workers compute): C2's
# compiling and the parallel collector's threads cost more CPU than they save
# (the sample, CPU-s of the whole run, 2 runs alternating: Flink 39 -> 31,
# Spark 36 -> 29). Passed as `--job_server_jvm_property`, only when the user
# gives none.
JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
JVM_FLAG_NAMES = ("job_server_jvm_property", "job_server_jvm_properties")


def runner_name(beam_argv: Sequence[str]) -> str:
    """The runner `beam_argv` names, as metadata.json records it: `FlinkRunner` /
    `SparkRunner` for any spelling Beam accepts, else the flag's value, and
    `DirectRunner` when there is none (Beam's default)."""
    given = flag_value(beam_argv, "runner")
    engine = ENGINES.get((given or "").lower())
    return RUNNER_NAMES[engine] if engine else given or "DirectRunner"


def flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value of `--name=v` / `--name v` in `argv` (the last one wins, as in
    argparse), or None when absent."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def is_local_master(engine: str, master: str) -> bool:
    """True when `master` runs the engine inside the job server's JVM."""
    if engine == "flink":
        return master in ("[local]", "[auto]")
    return master == "local" or master.startswith("local[")


def job_server_jar(
    engine: str, runners_dir: pathlib.Path = RUNNERS_DIR
) -> pathlib.Path:
    """Where `make runners` puts `engine`'s job server ("flink" or "spark")."""
    return runners_dir / JOB_SERVER_JARS[engine]


def with_engine_defaults(
    beam_argv: Sequence[str], *, runners_dir: pathlib.Path = RUNNERS_DIR
) -> list[str]:
    """`beam_argv` plus the local-engine defaults for a Flink or Spark runner.

    Args:
      beam_argv: The Beam flags the user gave (seqshards' own flags removed).
      runners_dir: Where `make runners` put the job servers.

    Returns:
      A new list: `beam_argv` followed by each default whose flag is absent.

    Raises:
      FileNotFoundError: a local engine is asked for, no job-server jar is given
        and none was fetched.
    """
    argv = list(beam_argv)
    engine = ENGINES.get((flag_value(argv, "runner") or "").lower())
    if engine is None:
        return argv
    added: dict[str, str] = {}
    master = flag_value(argv, MASTER_FLAGS[engine])
    if master is None:
        master = added[MASTER_FLAGS[engine]] = LOCAL_MASTERS[engine]
    local = is_local_master(engine, master)
    jar = job_server_jar(engine, runners_dir)
    if flag_value(argv, JAR_FLAGS[engine]) is None:
        if jar.exists():
            added[JAR_FLAGS[engine]] = str(jar)
        elif local:  # a cluster user may let Beam download its own jar
            raise FileNotFoundError(
                f"No {RUNNER_NAMES[engine]} job server: expected {jar} (`make "
                f"runners` fetches it; it needs java and mvn) or "
                f"--{JAR_FLAGS[engine]}=PATH. Received: --runner "
                f"{flag_value(argv, 'runner')} without --{JAR_FLAGS[engine]}."
            )
    if local:
        added.update(_local_defaults(engine, argv, master))
    out = argv + [f"--{name}={value}" for name, value in added.items()
                  if flag_value(argv, name) is None]  # fmt: skip
    if local and not any(flag_value(argv, name) for name in JVM_FLAG_NAMES):
        out += [f"--{JVM_FLAG_NAMES[0]}={flag}" for flag in JVM_FLAGS]
    return out


def _local_defaults(engine: str, argv: list[str], master: str) -> dict[str, str]:
    """Flags for the engine embedded in the job server: process workers, one per
    task slot, kept for the job, and Flink's restarts (the JVM's flags are added
    by the caller: that option may repeat)."""
    slots = LOCAL_PARALLELISM
    if engine == "flink":
        slots = int(flag_value(argv, "parallelism") or slots)
    elif master.startswith("local[") and master[6:-1].split(",")[0].isdigit():
        slots = int(master[6:-1].split(",")[0])
    out = {"sdk_worker_parallelism": str(slots)}
    if engine == "flink":
        out["parallelism"] = str(slots)
        out["flink_conf_dir"] = str(flink_conf_dir())
    if flag_value(argv, "environment_type") is None:
        out["environment_type"] = "PROCESS"
        out["environment_config"] = json.dumps({"command": str(worker_command())})
    out["environment_cache_millis"] = str(ENVIRONMENT_CACHE_MILLIS)
    out["environment_expiration_millis"] = str(ENVIRONMENT_EXPIRATION_MILLIS)
    return out


@functools.cache
def _scratch() -> pathlib.Path:
    """A directory for the files below, removed when this process exits."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="seqshards-engine-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@functools.cache
def flink_conf_dir() -> pathlib.Path:
    """A Flink configuration directory whose restart strategy restarts failed
    tasks up to `FLINK_RETRIES` times, 1 s, 2 s, 4 s ... `FLINK_MAX_BACKOFF_S`
    apart (a deterministic failure is reported after ~75 s of restarts).

    Beam's batch translation ignores `--number_of_execution_retries` (only its
    streaming one applies it), and Flink's default without checkpointing is no
    restart; Beam loads flink-conf.yaml from `--flink_conf_dir`.
    """
    directory = _scratch() / "flink-conf"
    directory.mkdir(exist_ok=True)
    (directory / "flink-conf.yaml").write_text(
        "restart-strategy.type: exponential-delay\n"
        "restart-strategy.exponential-delay.initial-backoff: 1 s\n"
        f"restart-strategy.exponential-delay.max-backoff: {FLINK_MAX_BACKOFF_S} s\n"
        "restart-strategy.exponential-delay.backoff-multiplier: 2.0\n"
        "restart-strategy.exponential-delay.jitter-factor: 0.0\n"
        "restart-strategy.exponential-delay.attempts-before-reset-backoff: "
        f"{FLINK_RETRIES}\n"
    )
    return directory


@functools.cache
def worker_command() -> pathlib.Path:
    """An executable that starts a Python SDK worker with this interpreter.

    Beam's PROCESS environment runs one executable with the worker's endpoints
    as flags (what the SDK container's `boot` does); this one is a two-line
    script whose `#!` line is `sys.executable`, and which puts this `pipeline`
    package first on the path: the workers run the same interpreter and code as
    the submitting process. It lives in a temporary directory removed at exit.
    """
    script = _scratch() / "boot"
    package_root = pathlib.Path(__file__).resolve().parents[2]
    script.write_text(
        f"#!{sys.executable}\n"
        f"import sys; sys.path.insert(0, {str(package_root)!r})\n"
        "from pipeline.beam import process_worker\n"
        "process_worker.main(sys.argv[1:])\n"
    )
    script.chmod(0o755)
    return script
