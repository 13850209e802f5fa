"""The benchmark suite: every engine on the same data, one table, latest.json.

Flow: gen_data (cached in bench/work/) -> for each N, each engine in its own
subprocess (bench/measure.py: timed from its `main`, imports excluded) while this
process samples the RSS of the engine's process tree -> one table, side by side
with the stock-TensorFlow reference measured in the same run ->
bench/results/latest.json. Then the scaling table (`scaling`): the reference
and each engine under `taskset` on 1 core and on all cores, runs alternating,
and the tfdata engine's profile by stage (`profile_tfdata.py`): where its
serial share goes.

Engines (`--engines` picks a subset by name):
  reference           bench/reference_pipeline.py (bucketed, batch 128)
  reference-nobucket  the same with --no_bucketing (only N <= 20000: it writes ~8x)
  ceiling-read        TFRecordDataset alone            (bench/parse_ceiling.py)
  ceiling-tf-parse    batched parse_sequence_example   (no features, no writing)
  ceiling-tfxbsl      tfx-bsl SequenceExample->Arrow decoder, one thread
  ceiling-beam-read   Beam ReadFromTFRecord+Map+Sum, in-process / 2 processes
  ceiling-beam-read-mp
  tfdata              python -m pipeline --engine tfdata
  tfdata-w2           the same with --tfdata_workers 2 (two worker processes)
  beam                python -m pipeline --engine beam --runner DirectRunner: in one
                      process Beam's BundleBasedDirectRunner (pipeline/beam/runner.py);
                      --shuffle_payload auto carries bytes here
  beam-reference      the same with --shuffle_payload reference
  beam-fnapi          ... --runner FnApiRunner (in_memory; auto: reference)
  beam-fnapi-bytes    ... --runner FnApiRunner --shuffle_payload bytes
  beam-mp             ... --direct_running_mode=multi_processing --direct_num_workers=2
  flink-1, flink-2    ... --runner FlinkRunner --parallelism 1 / 2: Apache Flink in
                      Beam's job server (`make runners`), SDK worker processes
Ours use `--columns_py bench/columns.py --batch_size 128 --bucket_boundaries auto`. A failing engine gives a row
"n/a: <first line of its error>" and the suite goes on.

Columns: examples/s = N / seconds of the engine's `main`; MB/s in = input bytes /
the same seconds; output MB = bytes written (ours: DIR/shards); padding efficiency
= real steps / (sum over batches of B * T) (ours: metadata.json); CPU s = user +
system seconds of the engine's process and every descendant it waited for (for
Flink: the JVM and the SDK workers), start-up included; peak RSS = max
over samples of the summed VmRSS of the engine's process tree, or the process's
own ru_maxrss if larger; x ref = examples/s over the reference's at the same N.

Usage:
  python bench/run_bench.py            # 20k and 200k, all engines (make bench)
  python bench/run_bench.py --quick    # 20k, no 2-worker rows, ~1-3 minutes
  python bench/run_bench.py --engines reference,tfdata --scaling_only --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import gen_data  # noqa: E402
import scaling  # noqa: E402

SIZES = (20_000, 200_000)
# --quick: no 2-worker rows (at 20k they mostly measure ~9 s of worker start-up).
QUICK_ENGINES = ("reference", "ceiling-read", "ceiling-tf-parse", "ceiling-tfxbsl",
                 "tfdata", "beam", "beam-reference")  # fmt: skip
BEAM_MP = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@dataclasses.dataclass(frozen=True)
class Run:
    """What an engine needs to know about one run."""

    input_glob: str
    output: pathlib.Path
    n: int


@dataclasses.dataclass(frozen=True)
class Engine:
    name: str
    kind: str  # reference | ceiling | ours
    target: str
    preload: str
    args: Callable[[Run], list[str]]
    runner: str = ""  # Beam runner flags, for the label
    max_n: int | None = None


def _ours(*extra: str) -> Callable[[Run], list[str]]:
    def args(run: Run) -> list[str]:
        return [
            "--input", run.input_glob, "--output", str(run.output),
            "--columns_py", str(BENCH / "columns.py"), "--batch_size", "128",
            "--bucket_boundaries", "auto", "--overwrite", "--no_progress", *extra,
        ]  # fmt: skip

    return args


def _ceiling(mode: str, *extra: str) -> Callable[[Run], list[str]]:
    return lambda run: ["--mode", mode, "--input", run.input_glob, *extra]


REFERENCE = str(BENCH / "reference_pipeline.py")
CEILING = str(BENCH / "parse_ceiling.py")
TF_KERAS = "tensorflow,tf_keras"
ENGINES = [
    Engine("reference", "reference", REFERENCE, TF_KERAS,
           lambda r: ["--input", r.input_glob, "--output", str(r.output)]),
    Engine("reference-nobucket", "reference", REFERENCE, TF_KERAS,
           lambda r: ["--input", r.input_glob, "--output", str(r.output), "--no_bucketing"],
           max_n=20_000),
    Engine("ceiling-read", "ceiling", CEILING, "tensorflow", _ceiling("read")),
    Engine("ceiling-tf-parse", "ceiling", CEILING, TF_KERAS, _ceiling("tf_parse")),
    Engine("ceiling-tfxbsl", "ceiling", CEILING,
           "tfx_bsl.coders.sequence_example_coder,tensorflow_metadata.proto.v0.schema_pb2",
           _ceiling("tfxbsl")),
    Engine("ceiling-beam-read", "ceiling", CEILING, "apache_beam",
           _ceiling("beam_read", "--runner=DirectRunner"), runner="DirectRunner"),
    Engine("ceiling-beam-read-mp", "ceiling", CEILING, "apache_beam",
           _ceiling("beam_read", "--runner=DirectRunner", *BEAM_MP),
           runner="DirectRunner multi_processing x2"),
    Engine("tfdata", "ours", "pipeline", "tensorflow", _ours("--engine", "tfdata")),
    Engine("tfdata-w2", "ours", "pipeline", "tensorflow",
           _ours("--engine", "tfdata", "--tfdata_workers", "2")),
    Engine("beam", "ours", "pipeline", "tensorflow,apache_beam",
           _ours("--engine", "beam", "--runner=DirectRunner"),
           runner="DirectRunner in_memory"),
    Engine("beam-reference", "ours", "pipeline", "tensorflow,apache_beam",
           _ours("--engine", "beam", "--shuffle_payload", "reference",
                 "--runner=DirectRunner"),
           runner="DirectRunner in_memory"),
    Engine("beam-fnapi", "ours", "pipeline", "tensorflow,apache_beam",
           _ours("--engine", "beam", "--runner=FnApiRunner"), runner="FnApiRunner"),
    Engine("beam-fnapi-bytes", "ours", "pipeline", "tensorflow,apache_beam",
           _ours("--engine", "beam", "--shuffle_payload", "bytes", "--runner=FnApiRunner"),
           runner="FnApiRunner"),
    Engine("beam-mp", "ours", "pipeline", "tensorflow,apache_beam",
           _ours("--engine", "beam", "--runner=DirectRunner", *BEAM_MP),
           runner="DirectRunner multi_processing x2"),
    *(Engine(f"flink-{k}", "ours", "pipeline", "tensorflow,apache_beam",
             _ours("--engine", "beam", "--runner=FlinkRunner", f"--parallelism={k}"),
             runner=f"FlinkRunner [local] parallelism {k}") for k in (1, 2)),
]  # fmt: skip


# --- process-tree memory ------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(parents.get(pid, []))
    return pids


def run_measured(cmd: list[str], log: pathlib.Path, timeout: float) -> dict:
    """Runs `cmd`, sampling its tree's summed VmRSS; returns wall time, peaks and the
    CPU seconds of the tree (this process's waited-for children, before and after)."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        peak_tree = peak_hwm = polls = 0
        pids = [proc.pid]
        while proc.poll() is None:
            if time.perf_counter() - start > timeout:
                proc.kill()
                proc.wait()
                return {"timeout": True, "wall_seconds": time.perf_counter() - start}
            if polls % 5 == 0:  # rescan the tree every 0.5 s
                pids = _tree(proc.pid)
            peak_tree = max(peak_tree, sum(_status_kb(p, "VmRSS:") for p in pids))
            peak_hwm = max(peak_hwm, max(_status_kb(p, "VmHWM:") for p in pids))
            polls += 1
            time.sleep(0.1)
    return {
        "returncode": proc.returncode,
        "wall_seconds": time.perf_counter() - start,
        "peak_tree_rss_mb": round(peak_tree / 1024, 1),
        "peak_process_hwm_mb": round(peak_hwm / 1024, 1),
        "cpu_seconds": round(_children_cpu() - cpu_before, 1),
    }


def _children_cpu() -> float:
    """User + system seconds of every terminated, waited-for descendant."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- one engine -----------------------------------------------------------------------


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0][:160] if lines else "failed"


def count_tfrecords(path: pathlib.Path) -> int:
    """Records in a TFRecord file, by walking the length headers (data not read)."""
    n, size = 0, path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + 12 <= size:
            f.seek(pos)
            (length,) = struct.unpack("<Q", f.read(8))
            pos += 16 + length
            n += 1
    if pos != size:
        raise ValueError(f"{path} ends inside a record (truncated)")
    return n


def _dir_bytes(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _runner_label(engine: Engine, used: list[str]) -> str:
    if not engine.runner:
        return "-"
    if not used:
        return engine.runner
    seen = list(dict.fromkeys(u for u in used if u != "SwitchingDirectRunner"))
    return f"{engine.runner} ({' -> '.join(seen)})"


def taskset(cores: int) -> list[str]:
    """The command prefix that runs a process on the first `cores` CPUs this
    process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if not 1 <= cores <= len(allowed):
        raise ValueError(
            f"Invalid value for argument `cores`. Expected 1..{len(allowed)}. "
            f"Received: cores={cores!r}"
        )
    return ["taskset", "-c", ",".join(str(c) for c in allowed[:cores])]


def measure_engine(
    engine: Engine,
    n: int,
    data: dict,
    work: pathlib.Path,
    timeout: float,
    keep: bool,
    cores: int | None = None,
) -> dict:
    """One run of `engine` on `data` (N = `n`), on the first `cores` CPUs
    (`taskset`) or wherever the kernel puts it; returns its row."""
    out_root = work / "out"
    out_root.mkdir(parents=True, exist_ok=True)
    name = f"{engine.name}-{n}" + ("" if cores is None else f"-cores{cores}")
    output = out_root / (name + (".tfrecord" if engine.kind == "reference" else ""))
    run = Run(input_glob=data["file_pattern"], output=output, n=n)
    result_file = work / "logs" / f"{name}.json"
    log = work / "logs" / f"{name}.log"
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    cmd = [
        *([] if cores is None else taskset(cores)),
        sys.executable, str(BENCH / "measure.py"), "--result", str(result_file),
        "--target", engine.target, "--preload", engine.preload, "--", *engine.args(run),
    ]  # fmt: skip
    row = {"engine": engine.name, "kind": engine.kind, "n": n, "runner": engine.runner,
           "command": " ".join(cmd), "loadavg_before": os.getloadavg()[0],
           "cores": cores}  # fmt: skip
    proc = run_measured(cmd, log, timeout)
    row.update(proc, loadavg_after=os.getloadavg()[0])
    report = json.loads(result_file.read_text()) if result_file.exists() else {}
    row["runners_used"] = report.get("runners", [])
    row["runner"] = _runner_label(engine, row["runners_used"])
    if proc.get("timeout"):
        row["error"] = f"timeout after {timeout:.0f} s"
    elif "error" in report or "seconds" not in report:
        row["error"] = report.get("error") or _first_line(log.read_text()[-2000:])
    elif engine.kind == "ours" and not (output / "metadata.json").exists():
        row["error"] = f"no {output.name}/metadata.json written"
    else:
        row["seconds"] = report["seconds"]
        metrics = report.get("metrics") or {}
        examples = metrics.get("examples", n)
        if engine.kind == "ours":
            meta = json.loads((output / "metadata.json").read_text())
            counts = meta.get("counts", meta)
            examples = counts.get("examples_written", n)
            metrics = {
                "padding_efficiency": meta.get("padding_efficiency"),
                "output_bytes": _dir_bytes(output / "shards"),
                "output_bytes_total": _dir_bytes(output),
                "counts": {k: v for k, v in counts.items() if not isinstance(v, dict)},
                "bucket_boundaries": meta.get("bucket_boundaries"),
            }
        row["metrics"] = metrics
        row["examples"] = examples
        notes = []
        if examples != n:
            notes.append(f"processed {examples} of {n} examples")
        if engine.kind == "ours":  # the shards must hold the batches metadata counts
            try:
                found = sum(count_tfrecords(p) for p in (output / "shards").rglob("*")
                            if p.is_file())  # fmt: skip
            except (OSError, ValueError) as e:
                found = f"unreadable ({e})"
            batches = metrics["counts"].get("batches")
            if found != batches:
                notes.append(f"shards hold {found} records, metadata.json says "
                             f"{batches} batches")  # fmt: skip
        if notes:
            row["note"] = "; ".join(notes)
        # The engine's process from its `main` on, plus the processes it
        # started and reaped (Flink/Spark: the job server's JVM, SDK workers).
        row["cpu_seconds"] = (report.get("cpu_seconds") or 0) + (
            report.get("cpu_seconds_children") or 0
        )
        row["io"] = report.get("io") or {}
        row["input_bytes"] = data["bytes"]
        row.update(amplification(row))
        row["examples_per_s"] = n / report["seconds"]
        row["mb_per_s_in"] = data["bytes"] / 1e6 / report["seconds"]
        row["output_mb"] = (
            metrics["output_bytes"] / 1e6 if metrics.get("output_bytes") else None
        )
        row["padding_efficiency"] = metrics.get("padding_efficiency")
    row["maxrss_self_mb"] = report.get("maxrss_self_mb")
    row["peak_rss_mb"] = (
        max(proc.get("peak_tree_rss_mb") or 0, report.get("maxrss_self_mb") or 0)
        or None
    )
    if not keep:
        shutil.rmtree(output, ignore_errors=True) if output.is_dir() else output.unlink(
            missing_ok=True
        )
    return row


# --- data, table, results --------------------------------------------------------------


def ensure_data(work: pathlib.Path, n: int, seed: int, shards: int) -> dict:
    """Generates the data set once; later runs reuse it (bench/work/ is gitignored)."""
    out = work / f"data-{n}-seed{seed}-shards{shards}"
    info_file = out / "dataset.json"
    if info_file.exists():
        return json.loads(info_file.read_text())
    start = time.perf_counter()
    paths = gen_data.write_dataset(
        str(out), num_examples=n, num_shards=shards, seed=seed
    )
    info = {
        "num_examples": n, "num_shards": shards, "seed": seed,
        "bytes": sum(os.path.getsize(p) for p in paths),
        "seconds": round(time.perf_counter() - start, 2),
        "file_pattern": str(out / "data-*-of-*.tfrecord"),
    }  # fmt: skip
    info_file.write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def machine() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform()}  # fmt: skip


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("tensorflow", "tf_keras", "apache-beam", "tfx-bsl", "numpy", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return ""


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def amplification(row: dict) -> dict:
    """Read amplification (bytes of read calls / input bytes) and write
    amplification (bytes of write calls / output bytes: ours, DIR/shards),
    from the engine process's /proc/self/io deltas (`measure.io_counters`)."""
    io, out = row.get("io") or {}, row.get("output_mb")
    outputs = (row.get("metrics") or {}).get("output_bytes") or (out or 0) * 1e6
    return {
        "read_amp": io["rchar"] / row["input_bytes"] if "rchar" in io else None,
        "write_amp": io["wchar"] / outputs if "wchar" in io and outputs else None,
    }


def marginal_table(rows: list[dict]) -> str:
    """Per engine measured at two sizes: the differences between its largest
    and smallest N, so what does not grow with the data (start-up, tracing,
    lazy module reads, the embedding tables) cancels. CPU per example is also
    given as a ratio to the tfdata engine's."""
    by = {}
    for r in rows:
        if "error" not in r and r.get("cpu_seconds") is not None and r.get("io"):
            by.setdefault(r["engine"], []).append(r)
    out = {}
    for name, runs in by.items():
        if len({r["n"] for r in runs}) < 2:
            continue
        lo, hi = min(runs, key=lambda r: r["n"]), max(runs, key=lambda r: r["n"])
        dn = hi["examples"] - lo["examples"]
        d_out = (hi["metrics"].get("output_bytes") or 0) - (
            lo["metrics"].get("output_bytes") or 0
        )
        out[name] = {
            "n": f"{lo['n']}->{hi['n']}",
            "cpu_us": 1e6 * (hi["cpu_seconds"] - lo["cpu_seconds"]) / dn,
            "read_amp": (hi["io"]["rchar"] - lo["io"]["rchar"])
            / (hi["input_bytes"] - lo["input_bytes"]),
            "write_amp": (hi["io"]["wchar"] - lo["io"]["wchar"]) / d_out
            if d_out
            else None,
            "cpu_s": (lo["cpu_seconds"], hi["cpu_seconds"]),
        }
    if not out:
        return ""
    base = out.get("tfdata", {}).get("cpu_us")
    head = ["engine", "N", "CPU-s", "CPU us/example", "x tfdata CPU",
            "read amp", "write amp"]  # fmt: skip
    lines = ["Marginal (largest N minus smallest N, same engine):",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for name, m in out.items():
        cells = [name, m["n"], f"{m['cpu_s'][0]:.1f} / {m['cpu_s'][1]:.1f}",
                 f"{m['cpu_us']:.0f}",
                 _fmt(m["cpu_us"] / base if base else None, ".2f"),
                 f"{m['read_amp']:.2f}x", _fmt(m["write_amp"], ".2f") + "x"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    """The markdown table: one line per (N, engine), ratio to the reference at N.

    CPU-s: user + system seconds of the engine's process from the call of its
    `main` (worker processes of a multi-process runner excluded); read amp /
    write amp: see `amplification` (whole run: fixed costs included; the
    marginal table removes them)."""
    ref = {r["n"]: r.get("examples_per_s") for r in rows if r["engine"] == "reference"}
    head = ["engine", "runner", "N", "examples/s", "CPU-s", "read amp", "write amp",
            "MB/s in", "output MB", "padding eff.", "peak RSS MB",
            "x reference"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            error = r["error"] if len(r["error"]) <= 100 else r["error"][:97] + "..."
            cells = [r["engine"], r["runner"], str(r["n"]), f"n/a: {error}",
                     "", "", "", "", "", "", _fmt(r.get("peak_rss_mb"), ".0f"),
                     ""]  # fmt: skip
        else:
            base = ref.get(r["n"])
            eff = r.get("padding_efficiency")
            cells = [
                r["engine"], r["runner"], str(r["n"]), _fmt(r["examples_per_s"], ",.0f"),
                _fmt(r.get("cpu_seconds"), ".1f"), _fmt(r.get("read_amp"), ".2f"),
                _fmt(r.get("write_amp"), ".2f"), _fmt(r["mb_per_s_in"], ".1f"), _fmt(r.get("output_mb"), ",.0f"),
                "-" if eff is None else f"{100 * eff:.1f} %",
                _fmt(r.get("peak_rss_mb"), ".0f"),
                _fmt(r["examples_per_s"] / base if base else None, ".2f"),
            ]  # fmt: skip
        if r.get("note"):
            cells[0] += " (!)"
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        f"(!) {r['engine']} at N={r['n']}: {r['note']}" for r in rows if r.get("note")
    ]
    return "\n".join(lines)


def best_of(tries: list[dict]) -> dict:
    """The fastest of an engine's runs (or the first, when all failed), with
    every run's seconds in "all_seconds"."""
    ok = [t for t in tries if "error" not in t]
    best = min(ok, key=lambda t: t["seconds"]) if ok else tries[0]
    best["all_seconds"] = [t.get("seconds") for t in tries]
    return best


def _status(row: dict) -> str:
    status = row.get("error") or f"{row['examples_per_s']:,.0f} examples/s"
    cores = "" if row.get("cores") is None else f", {row['cores']} core(s)"
    return f"[{row['n']}] {row['engine']}: {status} (load {row['loadavg_before']:.1f}{cores})"


def measure_scaling(
    engines: list[Engine], datasets: dict, work: pathlib.Path, args
) -> list[dict]:
    """Each engine on 1 core and on all cores at each N; the two core counts
    alternate within each repeat (the machine's load drifts); the fastest of
    the repeats is kept."""
    cores = len(os.sched_getaffinity(0))
    rows = []
    for n, data in datasets.items():
        for engine in engines:
            tries: dict[int, list] = {1: [], cores: []}
            for _ in range(args.repeat):
                for c in tries:
                    tries[c].append(measure_engine(engine, n, data, work, args.timeout,
                                                   args.keep_outputs, cores=c))  # fmt: skip
            for runs in tries.values():
                rows.append(best_of(runs))
                print(_status(rows[-1]), file=sys.stderr, flush=True)
    return rows


def profile_by_stage(data: dict, timeout: float) -> str:
    """`profile_tfdata.py`'s tables on `data` (all cores): each stage's CPU
    alone and the whole run's CPU by thread, i.e. where the serial share goes."""
    cmd = [sys.executable, str(BENCH / "profile_tfdata.py"), "--input",
           data["file_pattern"]]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    if proc.returncode:
        return f"profile_tfdata.py failed: {_first_line(proc.stderr[-2000:])}"
    return (
        f"`{' '.join(['bench/profile_tfdata.py', *cmd[2:]])}`\n\n{proc.stdout.strip()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20k examples and the engines of QUICK_ENGINES only.",
    )
    parser.add_argument(
        "--sizes",
        default=None,
        help="Comma-separated N (default 20000,200000; --quick 20000).",
    )
    parser.add_argument(
        "--engines", default=None, help="Comma-separated engine names (default: all)."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_shards", type=int, default=8)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="Runs per engine and N; the fastest is reported.",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="Seconds per run."
    )
    parser.add_argument("--work_dir", default=str(BENCH / "work"))
    parser.add_argument("--results", default=str(BENCH / "results" / "latest.json"))
    parser.add_argument("--keep_outputs", action="store_true")
    parser.add_argument(
        "--no_scaling",
        action="store_true",
        help="Skip the scaling table (1 core vs all cores) and the profile.",
    )
    parser.add_argument(
        "--scaling_only",
        action="store_true",
        help="Only the scaling table and the profile (no main table).",
    )
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [SIZES[0]] if args.quick else list(SIZES))  # fmt: skip
    names = args.engines.split(",") if args.engines else (
        list(QUICK_ENGINES) if args.quick else [e.name for e in ENGINES])  # fmt: skip
    unknown = set(names) - {e.name for e in ENGINES}
    if unknown:
        raise ValueError(
            f"Invalid value for argument `engines`. Expected names from "
            f"{[e.name for e in ENGINES]}. Received: {sorted(unknown)}"
        )
    engines = [e for e in ENGINES if e.name in names]
    work = pathlib.Path(args.work_dir)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    started = datetime.datetime.now(datetime.timezone.utc)
    rows, datasets = [], {}
    for n in sizes:
        data = datasets[n] = ensure_data(work, n, args.seed, args.num_shards)
        for engine in [] if args.scaling_only else engines:
            if engine.max_n is not None and n > engine.max_n:
                continue
            tries = [measure_engine(engine, n, data, work, args.timeout, args.keep_outputs)
                     for _ in range(args.repeat)]  # fmt: skip
            rows.append(best_of(tries))
            print(_status(rows[-1]), file=sys.stderr, flush=True)

    text = table(rows) if rows else ""
    marginal = marginal_table(rows)
    text += "\n\n" + marginal if marginal else ""
    print(text)
    scaling_rows, scaling_text, scaling_lines, profile = [], "", [], ""
    wanted = scaling.QUICK_ENGINES if args.quick else scaling.ENGINES
    scaled = [e for e in ENGINES if e.name in wanted and e.name in names]
    if scaled and not args.no_scaling:
        scaling_rows = measure_scaling(scaled, datasets, work, args)
        cores = len(os.sched_getaffinity(0))
        scaling_text, scaling_lines = scaling.table(scaling_rows, cores)
        print(f"\nScaling: 1 core vs {cores} (taskset), fastest of {args.repeat}\n")
        print(scaling_text)
        if any(e.name == "tfdata" for e in scaled):
            profile = profile_by_stage(datasets[max(datasets)], args.timeout)
            print(f"\nWhere tfdata's time goes, by stage (N={max(datasets)})\n")
            print(profile)
    results = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT), *(argv or sys.argv[1:])]),
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain", "--", "bench", "pipeline", "transforms"))},
        "machine": machine(),
        "versions": versions(),
        "datasets": {str(n): d for n, d in datasets.items()},
        "rows": rows,
        "table": text,
        "scaling": {"rows": scaling_rows, "table": scaling_text,
                    "lines": scaling_lines, "profile": profile},
    }  # fmt: skip
    path = pathlib.Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    print(f"results: {os.path.relpath(path, ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
