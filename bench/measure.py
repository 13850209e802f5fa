"""Runs one engine in this (child) process and reports its time, memory and runner.

run_bench.py starts one of these per engine so that peak RSS is per engine. The
heavy imports (`--preload`) and the engine module itself are imported before the
clock starts, so every engine is timed from the call of its `main` to its return:
interpreter start-up and `import tensorflow` (~3-5 s here) are excluded for all.

When Beam is loaded, the `run_pipeline` of Beam's runner classes are wrapped to
record which runner actually ran (DirectRunner may try Prism and fall back).

Usage:
  python bench/measure.py --result OUT.json --target bench/reference_pipeline.py \
      [--preload tensorflow,tf_keras] -- ENGINE_ARGS...
  python bench/measure.py --result OUT.json --target pipeline -- --engine tfdata ...
`--target` is a .py file or a module (its `__main__` submodule if it has one); its
`main` is called with sys.argv set (and with argv if it takes a parameter).

Besides the time it reports, over the same span (from the call of `main`), the
process's CPU seconds (user + system, every thread; `cpu_seconds`) and its I/O
counters (`io`: the deltas of /proc/self/io). Worker processes a runner starts
(`--direct_running_mode=multi_processing`) are not in them: their CPU is in
`cpu_seconds_children` (counted when they are reaped), their I/O nowhere.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import importlib.util
import inspect
import json
import os
import re
import resource
import sys
import time
import traceback


def _load(target: str):
    if target.endswith(".py"):
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        spec = importlib.util.spec_from_file_location("bench_target", target)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    sys.path.insert(0, os.getcwd())  # as `python -m target` would
    try:
        return importlib.import_module(f"{target}.__main__")
    except ModuleNotFoundError as e:
        if e.name != f"{target}.__main__":
            raise
        return importlib.import_module(target)


def _record_beam_runners(used: list[str]) -> None:
    """Wraps the Beam runners' run_pipeline so the runner that ran is on record."""
    from apache_beam.runners.direct import direct_runner
    from apache_beam.runners.portability import prism_runner
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    classes = [
        direct_runner.SwitchingDirectRunner,
        direct_runner.BundleBasedDirectRunner,
        fn_runner.FnApiRunner,
        prism_runner.PrismRunner,
    ]
    for cls in classes:
        original = cls.__dict__.get("run_pipeline")
        if original is None:
            continue

        def wrapped(self, *args, _original=original, _name=cls.__name__, **kwargs):
            used.append(_name)
            try:
                return _original(self, *args, **kwargs)
            except Exception:
                used.append(f"{_name}:failed")
                raise

        cls.run_pipeline = wrapped


def _summary(error: BaseException) -> str:
    """`Type: first line`, or the innermost `...Error: ...` line of a remote traceback."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback"):
        raised = [
            line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b", line)
        ]
        if raised:
            return raised[-1]
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip()


def io_counters() -> dict[str, int]:
    """This process's I/O counters (/proc/self/io: every thread, dead ones
    included): `rchar`/`wchar` count the bytes of read and write system
    calls (page-cache hits included, so a warm cache does not hide a second
    read), `read_bytes`/`write_bytes` what reached the storage layer."""
    try:
        with open("/proc/self/io") as f:
            return {k: int(v) for k, v in (line.split(":") for line in f)}
    except OSError:  # not Linux
        return {}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (every thread) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)  # ru_maxrss is in KiB on Linux


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--result", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--preload", default="tensorflow")
    args = parser.parse_args(argv[:split])
    engine_argv = argv[split + 1 :]

    report: dict = {"target": args.target, "argv": engine_argv, "runners": []}
    try:
        for name in filter(None, args.preload.split(",")):
            importlib.import_module(name)
        if "apache_beam" in sys.modules:
            _record_beam_runners(report["runners"])
        module = _load(args.target)
        sys.argv = [args.target] + engine_argv
        takes_argv = bool(inspect.signature(module.main).parameters)
        io_start, cpu_start = io_counters(), cpu_seconds()
        start = time.perf_counter()
        try:
            returned = module.main(engine_argv) if takes_argv else module.main()
        except SystemExit as e:  # argparse-style CLIs
            if e.code not in (0, None):
                raise RuntimeError(f"exited with status {e.code}") from e
            returned = None
        report["seconds"] = time.perf_counter() - start
        # From the call of `main` on, like the clock: the preloaded modules'
        # reads (and the interpreter's start) are not counted.
        report["cpu_seconds"] = cpu_seconds() - cpu_start
        report["io"] = {k: v - io_start.get(k, 0) for k, v in io_counters().items()}
        if isinstance(returned, dict):
            report["metrics"] = returned
        status = 0
    except BaseException as e:  # the report must say why the engine is n/a
        report["error"] = _summary(e)
        report["traceback"] = traceback.format_exc()
        status = 1
    # What the engine left to exit handlers: Beam's job servers (a Flink or
    # Spark JVM and its SDK workers) stop there. os._exit below skips them:
    # the JVM would outlive this process, its CPU uncounted.
    try:
        atexit._run_exitfuncs()
    except BaseException as e:
        report.setdefault("error", f"exit handlers: {_summary(e)}")
    report["maxrss_self_mb"] = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report["cpu_seconds_children"] = usage.ru_utime + usage.ru_stime
    report["maxrss_children_mb"] = _mb(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    with open(args.result, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True, default=str)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # skip interpreter teardown (Beam/TF threads can hang it)


if __name__ == "__main__":
    main()
