"""Per-stage profile of the reference pipeline: where its time goes.

Runs bench/reference_pipeline.py once per `--stop_after` stage (fresh process each,
best of `--repeat`) and prints cumulative seconds and each stage's marginal cost
(its cumulative time minus the previous stage's). The pipeline overlaps stages on
the two cores, so the marginal cost is what adding the stage costs end to end.

Usage:
  python bench/profile_reference.py --input 'bench/work/data-200000-seed0-shards8/data-*'
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parent
STAGES = ("read", "length", "bucket", "parse", "features", "serialize", "write")
NO_BUCKET_STAGES = ("read", "bucket", "parse", "features", "serialize", "write")


def run_stage(pattern: str, output: str, stage: str, no_bucketing: bool) -> float:
    cmd = [sys.executable, str(BENCH / "reference_pipeline.py"), "--input", pattern,
           "--output", output, "--stop_after", stage]  # fmt: skip
    if no_bucketing:
        cmd.append("--no_bucketing")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", default="/tmp/seqshards-reference-profile.tfrecord")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no_bucketing", action="store_true")
    args = parser.parse_args(argv)
    stages = NO_BUCKET_STAGES if args.no_bucketing else STAGES
    cumulative = {}
    for stage in stages:
        cumulative[stage] = min(
            run_stage(args.input, args.output, stage, args.no_bucketing)
            for _ in range(args.repeat)
        )
    pathlib.Path(args.output).unlink(missing_ok=True)
    total = cumulative[stages[-1]]
    print("| stage (cut after) | cumulative s | marginal s | share |")
    print("|---|---|---|---|")
    previous = 0.0
    for stage in stages:
        marginal = cumulative[stage] - previous
        previous = cumulative[stage]
        print(f"| {stage} | {cumulative[stage]:.2f} | {marginal:+.2f} | "
              f"{100 * marginal / total:.0f} % |")  # fmt: skip
    return cumulative


if __name__ == "__main__":
    main()
