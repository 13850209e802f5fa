"""Fetches Beam's Flink and Spark job servers with Maven into .runners/ (`make runners`).

Place in the flow: a developer tool beside the job. `pipeline.beam.engines`
finds what this writes (`engines.job_server_jar(engine)`) and passes it
as `--flink_job_server_jar` / `--spark_job_server_jar`.

Why a classpath and not Beam's job-server jar: Beam publishes one shaded jar
per engine (`org.apache.beam:beam-runners-flink-<flink>-job-server:<beam>`,
`beam-runners-spark-3-job-server`), but the Maven Central this project reaches
serves none of them (tried: 2.62.0, 2.72.0, 2.73.0, 2.75.0, 2.77.0: "not
found"). It does serve the runner modules the shaded jar is built from (the
job-server driver classes live in them), with their dependencies, up to Beam
2.62.0 for both engines (2.69.0, 2.70.0 and 2.73.0 lack
beam-runners-java-job-service). So this resolves the runner module and the
engine's libraries with `mvn dependency:copy-dependencies` into
.runners/<engine>-<version>/lib/ and writes next to it a thin jar whose manifest
names the driver class and that classpath: `java -jar` runs it exactly like the
shaded jar.

The Python SDK stays at the pin in setup.py (2.77): apache-beam 2.62 (up to
2.68) requires protobuf < 6 and TensorFlow 2.21 protobuf >= 6.31.1, so pip
cannot install it beside TensorFlow 2.21 (ResolutionImpossible), and the first
apache-beam that allows protobuf 6 (2.69) has no Java job service here. Beam's
job API and Fn API are versioned protos that both sides speak, and
tests/pipeline/beam/test_flink_spark.py proves the pair byte-for-byte.

Idempotent: an engine whose thin jar exists and whose recorded coordinates
match is left alone, without running Maven (offline once fetched).

Usage:
  python tools/fetch_runners.py               # both engines
  python tools/fetch_runners.py --engines flink
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pipeline.beam import engines  # noqa: E402

# The newest Beam Java release whose runner modules the reachable Maven Central
# serves for both engines, and the newest Flink that release builds a runner for.
BEAM_JAVA_VERSION = "2.62.0"
FLINK_VERSION = "1.19"
SPARK_VERSION = "3.5.0"  # what Beam's spark-3 job server bundles
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MANIFEST_FILE = "coordinates.json"
# The job server's log: the runner modules bring slf4j-api 1.7.30 and no binding.
# Flink: java.util.logging on stderr, as Beam's shaded jar does. Spark routes
# java.util.logging into slf4j, so a JUL binding there logs itself until the
# stack overflows (seen: the job hung); it gets Spark's own log4j 2 instead.
LOG_BINDING = "org.slf4j:slf4j-jdk14:1.7.30"
SPARK_LOG_BINDING = "org.apache.logging.log4j:log4j-slf4j-impl:2.20.0"
# What Spark's own launcher opens on Java 17 (JavaModuleOptions). Beam's Python
# SparkRunner passes four of them; without sun.security.action a task that fails
# (a killed SDK worker) throws IllegalAccessError in Spark's error path, and the
# job hangs instead of failing.
SPARK_ADD_OPENS = tuple(
    f"java.base/{package}"
    for package in (
        "java.lang", "java.lang.invoke", "java.lang.reflect", "java.io", "java.net",
        "java.nio", "java.util", "java.util.concurrent",
        "java.util.concurrent.atomic", "sun.nio.ch", "sun.nio.cs",
        "sun.security.action", "sun.util.calendar",
    )
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Runner:
    """One engine's job server: Maven coordinates and the driver to start."""

    engine: str  # a key of engines.ENGINES
    directory: str  # under .runners/, names the versions
    main_class: str
    artifacts: tuple[str, ...]  # groupId:artifactId:version, resolved transitively
    add_opens: tuple[str, ...] = ()  # module/package opened to the classpath


RUNNERS = (
    Runner(
        engine="flink",
        directory=f"flink-{FLINK_VERSION}-beam-{BEAM_JAVA_VERSION}",
        main_class="org.apache.beam.runners.flink.FlinkJobServerDriver",
        artifacts=(
            f"org.apache.beam:beam-runners-flink-{FLINK_VERSION}:{BEAM_JAVA_VERSION}",
            LOG_BINDING,
        ),
    ),
    Runner(
        engine="spark",
        directory=f"spark-{SPARK_VERSION}-beam-{BEAM_JAVA_VERSION}",
        main_class="org.apache.beam.runners.spark.SparkJobServerDriver",
        add_opens=SPARK_ADD_OPENS,
        # Beam's runner declares Spark `provided`: the job server brings it.
        artifacts=(
            f"org.apache.beam:beam-runners-spark-3:{BEAM_JAVA_VERSION}",
            f"org.apache.spark:spark-core_2.12:{SPARK_VERSION}",
            f"org.apache.spark:spark-streaming_2.12:{SPARK_VERSION}",
            SPARK_LOG_BINDING,
        ),
    ),
)


TOOLS = {"java": "a JDK 11 or 17", "mvn": "Apache Maven 3"}


def require_tools(*tools: str) -> None:
    """Raises if one of `tools` ("java": to run the job servers, "mvn": to fetch
    them) is not on PATH.

    Raises:
      FileNotFoundError: naming the missing tool and how to get it.
    """
    for tool in tools:
        if shutil.which(tool) is None:
            raise FileNotFoundError(
                f"`{tool}` is not on PATH. Expected {TOOLS[tool]}: the Flink and "
                "Spark job servers are Java programs fetched with Maven. Received: "
                f"PATH={os.environ.get('PATH', '')!r}. Install it (Debian: `apt-get "
                "install openjdk-17-jdk-headless maven`) and rerun `make runners`."
            )


def _pom(runner: Runner) -> str:
    """A pom whose dependencies are the runner's artifacts (checkerframework's
    jdk8 stubs excluded, as Beam's own build does)."""
    deps = []
    for coordinates in runner.artifacts:
        group, artifact, version = coordinates.split(":")
        deps.append(
            f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version></dependency>"
        )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        f"  <groupId>seqshards.runners</groupId><artifactId>{runner.engine}</artifactId>\n"
        "  <version>1</version><packaging>pom</packaging>\n"
        f"  <dependencies>\n    {chr(10).join(deps)}\n  </dependencies>\n"
        "</project>\n"
    )


def _manifest_line(text: str) -> bytes:
    """One manifest header, wrapped at 72 bytes with continuation lines (the jar
    manifest format)."""
    data, lines = text.encode(), []
    lines.append(data[:72])
    data = data[72:]
    while data:
        lines.append(b" " + data[:71])
        data = data[71:]
    return b"\r\n".join(lines)


def write_launcher(
    jar: pathlib.Path, main_class: str, lib: pathlib.Path, add_opens: Sequence[str] = ()
) -> None:
    """Writes `jar`: no classes, a manifest with `main_class`, a Class-Path of every
    jar in `lib` (relative to `jar`) and `add_opens` (the manifest form of
    `--add-opens`), so `java -jar jar` starts the driver."""
    entries = sorted(p.name for p in lib.glob("*.jar"))
    rel = os.path.relpath(lib, jar.parent)
    class_path = " ".join(f"{rel}/{name}" for name in entries)
    manifest = b"\r\n".join(
        [
            b"Manifest-Version: 1.0",
            _manifest_line(f"Main-Class: {main_class}"),
            _manifest_line(f"Class-Path: {class_path}"),
            *(
                [_manifest_line("Add-Opens: " + " ".join(add_opens))]
                if add_opens
                else []
            ),
            b"",
            b"",
        ]
    )
    tmp = jar.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", manifest)
    tmp.replace(jar)


def fetch(runner: Runner, cache: pathlib.Path, *, quiet: bool = True) -> pathlib.Path:
    """Resolves `runner` into `cache` unless already there; returns its thin jar.

    Raises:
      FileNotFoundError: not fetched yet and `mvn` is not on PATH.
      RuntimeError: Maven failed (its output's last lines are in the message).
    """
    jar = cache / engines.JOB_SERVER_JARS[runner.engine]
    home = cache / runner.directory
    record = home / MANIFEST_FILE
    wanted = {
        "main_class": runner.main_class,
        "artifacts": list(runner.artifacts),
        "add_opens": list(runner.add_opens),
    }
    if jar.exists() and record.exists() and json.loads(record.read_text()) == wanted:
        print(f"{runner.engine}: {jar} (cached)")
        return jar
    require_tools("mvn")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_pom(runner))
    lib = home / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    cmd = ["mvn", "-B", *(["-q"] if quiet else []), "-f", str(home / "pom.xml"),
           f"{DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime",
           f"-DoutputDirectory={lib}"]  # fmt: skip
    print(f"{runner.engine}: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise RuntimeError(
            f"Maven could not resolve the {runner.engine} job server "
            f"{list(runner.artifacts)} (exit code {done.returncode}). Check that "
            f"Maven Central is reachable (or ~/.m2/settings.xml names a mirror); "
            f"Maven said:\n{tail}"
        )
    write_launcher(jar, runner.main_class, lib, runner.add_opens)
    record.write_text(json.dumps(wanted, indent=2) + "\n")
    size = sum(p.stat().st_size for p in lib.glob("*.jar")) / 1e6
    print(
        f"{runner.engine}: {jar} ({len(list(lib.glob('*.jar')))} jars, {size:.0f} MB)"
    )
    return jar


def main(argv: list[str] | None = None) -> int:
    """`make runners`: fetches the engines named by `--engines`; returns the exit
    code (2, with the reason on stderr, when a tool is missing or Maven fails)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--engines",
        default=",".join(r.engine for r in RUNNERS),
        help="Comma-separated subset of: " + ", ".join(r.engine for r in RUNNERS),
    )
    parser.add_argument("--cache", default=str(engines.RUNNERS_DIR))
    parser.add_argument("--verbose", action="store_true", help="Maven's full output.")
    args = parser.parse_args(argv)
    names = [n for n in args.engines.split(",") if n]
    known = {r.engine: r for r in RUNNERS}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(
            f"Invalid value for argument `--engines`. Expected names from "
            f"{sorted(known)}. Received: {unknown}"
        )
    try:
        require_tools("java")  # the job servers run on it, fetched or not
        for name in names:
            fetch(known[name], pathlib.Path(args.cache), quiet=not args.verbose)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"fetch_runners: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
