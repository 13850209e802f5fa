"""Per-stage profile of the tfdata engine, and the bound its work puts on its speed.

The engine overlaps its stages in threads, so a profile of one run cannot say
what each stage costs. Here each stage's own function runs alone, one chunk of
1,024 records at a time, on the same data, timed by wall clock and by process
CPU (`resource.getrusage`, which counts TensorFlow's threads too):

  lengths pass  `lengths.histogram` (TFRecordDataset + light parse)
  trace         the parser's and the layer's `tf.function`s (once per run)
  read          `tfrecord.read_file` (framing + CRC)
  validate      `validate.validate_decoded` (the batched parse + checks)
  features      `FeatureComputer.flat_rows` (`SequenceFeatures.step_rows`)

Then the whole engine runs once, in this process, as `make bench` runs it
(`pipeline --engine tfdata`, TensorFlow imported before the clock). Its CPU
minus the stages above is what the rest costs: dropping duplicate ids,
bucketing, gathering rows into batches, encoding and writing records, thread
hand-offs. That run's CPU is also split by thread (sampled from /proc): the
engine names its threads by stage. From `tfdata.workers.MIN_CORES` cores the
engine runs validate and features in worker processes and builds the records
in a writer process (`tfdata.workers`, `tfdata.shard_files`), forked by a
forkserver: the main process's threads (read, main: ids and bucketing,
write: handing batches over) are then what stays under one GIL, and the
processes' CPU is not in this process's rusage (the group of child processes
counts only those this process waited for). The
bound: the run's CPU seconds over the cores is its wall time with every core
busy all the time.

Usage:
  python bench/profile_tfdata.py --input 'bench/work/data-200000-seed0-shards8/data-*'
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import resource
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

BENCH = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from pipeline.cli import main as cli  # noqa: E402
from pipeline.stages import config, decode, features, tfrecord, validate  # noqa: E402
from pipeline.tfdata import engine  # noqa: E402
from pipeline.tfdata.chunks import CHUNK  # noqa: E402
from pipeline.tfdata.lengths import histogram as length_histogram  # noqa: E402


def _cpu(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class _Clock:
    """Wall and CPU seconds per stage name, summed over `with clock(name):`."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        wall, cpu = time.perf_counter(), _cpu()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + _cpu() - cpu


def profile_stages(files, columns_py: str, clock: _Clock) -> int:
    """Runs the stages one after another (see the module docstring); returns
    the number of valid records."""
    spec = config.load_columns(columns_py, allow_python=True)
    id_feature = config.JobConfig.id_feature  # the job's defaults, as run_bench's
    record_spec = decode.record_spec(spec.columns, spec.context, id_feature)
    policy = validate.Policy()
    with clock("lengths pass"):
        length_histogram(files, record_spec, lambda: None, policy)
    decoder = decode.Decoder(record_spec, strings_as_tensors=True)
    weights = features.build_embedding_weights(spec.columns)
    computer = features.FeatureComputer(spec.columns, spec.context, weights, id_feature)
    with clock("trace"):
        engine.trace(decoder, computer)
    valid = 0
    for file_index, path in enumerate(files):
        chunks = tfrecord.read_file(path, file_index, chunk_size=CHUNK)
        while True:
            with clock("read"):
                chunk, _ = next(chunks, (None, None))
            if chunk is None:
                break
            if not chunk:  # only damaged records (read errors)
                continue
            with clock("validate"):
                checked, decoded, rows = validate.validate_decoded(
                    decoder, record_spec, chunk, policy, files
                )
            lengths = np.asarray([v[1] for v in checked.valid], np.int64)
            with clock("features"):
                computer.flat_rows(decoded, rows, lengths)
            valid += len(lengths)
    return valid


class _ThreadCpu:
    """CPU seconds of every thread of this process while running, sampled from
    /proc (a thread's last sample counts: pools end with the run), grouped by
    the engine's thread names (`seqshards-read`, `-validate`, `-features`,
    `-write`), TensorFlow's own threads (`tf_*`) and the rest."""

    SAMPLER = "profile-sampler"

    def __init__(self, every: float = 0.1):
        self._every, self._last, self._names = every, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=self.SAMPLER, daemon=True
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self):
        while not self._stop.wait(self._every):
            self._sample()

    def _sample(self):
        for t in threading.enumerate():
            if t.native_id is not None:
                self._names[t.native_id] = t.name
        tick = os.sysconf("SC_CLK_TCK")
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue  # ended between listdir and open
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            self._last[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / tick)

    def by_group(self, since: dict) -> dict[str, float]:
        """CPU seconds per thread group since the sample `since`."""
        groups: dict[str, float] = {}
        for tid, (comm, cpu) in self._last.items():
            name = self._names.get(tid, comm)
            if name.startswith("seqshards-"):
                group = name.rstrip("0123456789").rstrip("_")
            elif comm.startswith("tf_"):
                group = "TensorFlow's threads"
            elif name == "MainThread":
                group = "main thread"
            elif name == self.SAMPLER:
                continue  # this profiler's own
            elif tid in self._names:
                group = f"Python thread {name.rsplit('_', 1)[0]}"
            else:
                group = f"native threads named {comm!r}"
            groups[group] = groups.get(group, 0.0) + cpu - since.get(tid, (0, 0.0))[1]
        return groups


def profile_engine(pattern: str, columns_py: str, batch_size: int) -> tuple:
    """(wall s, CPU s, {thread group: CPU s}) of one whole tfdata run, output to
    a temporary dir; the CPU of its worker and writer processes (`tfdata.workers`,
    `shard_files`) counts, as one group."""
    out = tempfile.mkdtemp(prefix="seqshards-profile-")
    try:
        with _ThreadCpu() as threads:
            threads._sample()
            before = dict(threads._last)
            children = _cpu(resource.RUSAGE_CHILDREN)
            wall, cpu = time.perf_counter(), _cpu()
            code = cli.main(["--input", pattern, "--output", f"{out}/out",
                             "--columns_py", columns_py, "--batch_size",
                             str(batch_size), "--bucket_boundaries", "auto",
                             "--no_progress", "--engine", "tfdata"])  # fmt: skip
            wall, cpu = time.perf_counter() - wall, _cpu() - cpu
            children = _cpu(resource.RUSAGE_CHILDREN) - children
        if code:
            raise SystemExit(f"the engine failed (exit {code})")
        groups = threads.by_group(before)
        if children > 0:
            groups["child processes waited for"] = children
        return wall, cpu + children, groups
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--columns_py", default=str(BENCH / "columns.py"))
    parser.add_argument("--batch_size", type=int, default=128)
    args = parser.parse_args(argv)
    files = tfrecord.match_files(args.input)
    clock = _Clock()
    n = profile_stages(files, args.columns_py, clock)
    wall, cpu, threads = profile_engine(args.input, args.columns_py, args.batch_size)
    cores = len(os.sched_getaffinity(0))
    alone = sum(clock.cpu.values())
    print(f"tfdata engine, {n:,} valid records in {len(files)} files, {cores} cores")
    print("| stage, run alone | wall s | CPU s | share of the run's CPU |")
    print("|---|---|---|---|")
    for name in clock.wall:
        print(f"| {name} | {clock.wall[name]:.2f} | {clock.cpu[name]:.2f} | "
              f"{100 * clock.cpu[name] / cpu:.0f} % |")  # fmt: skip
    print(f"| the rest (ids, bucketing, batches, records, writes) | - | "
          f"{cpu - alone:.2f} | {100 * (cpu - alone) / cpu:.0f} % |")  # fmt: skip
    print(f"| **whole run** (stages overlapped) | {wall:.2f} | {cpu:.2f} | 100 % |")
    print(
        f"cores busy on average: {cpu / wall:.2f} of {cores}; with all {cores} "
        f"busy all the time the run would take {cpu / cores:.2f} s "
        f"({n / (cpu / cores):,.0f} examples/s)"
    )
    print()
    print("| the whole run's threads | CPU s | share |")
    print("|---|---|---|")
    for group, seconds in sorted(threads.items(), key=lambda g: -g[1]):
        if seconds < 0.005:
            continue
        print(f"| {group} | {seconds:.2f} | {100 * seconds / cpu:.0f} % |")
    return {"stages_cpu": clock.cpu, "stages_wall": clock.wall, "wall": wall,
            "cpu": cpu, "threads": threads}  # fmt: skip


if __name__ == "__main__":
    main()
