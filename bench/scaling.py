"""The scaling table of `make bench`: each engine on 1 core and on all cores.

Flow: run_bench measures each engine of `ENGINES` under `taskset -c 0` and
again on all the cores it may use (`taskset -c 0-{n-1}`), at each N; this
module turns those rows into one table:

  rate        examples/s; with two or more N, the marginal rate between the
              smallest and the largest, (N2 - N1) / (s(N2) - s(N1)): start-up
              and the first trace cancel out (the rate issue 21 defines)
  speedup     rate on n cores / rate on 1 core
  p           the parallel fraction Amdahl's law gives that speedup,
              p = (1 - 1/speedup) / (1 - 1/n)   (n = 2: p = 2 (1 - 1/speedup))
  16, 64      Amdahl's projection: rate_1 / ((1 - p) + p / m), p clipped to
              [0, 1]
  x ref       rate over the reference's on the same cores

Where the serial share goes, by stage, is `profile_tfdata.py`'s output, which
run_bench prints after the table.
"""

from __future__ import annotations

ENGINES = ("reference", "tfdata", "tfdata-w2", "beam")  # --quick: the first two
QUICK_ENGINES = ("reference", "tfdata")
PROJECT = (16, 64)


def parallel_fraction(speedup: float, cores: int) -> float:
    """Amdahl's parallel fraction for `speedup` on `cores` over 1 core.

    Args:
      speedup: Rate on `cores` over the rate on 1 core, > 0.
      cores: Cores of the faster run, >= 2.
    """
    if cores < 2 or speedup <= 0:
        raise ValueError(
            "Invalid arguments. Expected speedup > 0 and cores >= 2. "
            f"Received: speedup={speedup!r}, cores={cores!r}"
        )
    return (1 - 1 / speedup) / (1 - 1 / cores)


def amdahl(rate_1: float, p: float, cores: int) -> float:
    """The rate on `cores` Amdahl's law projects from `rate_1` on 1 core."""
    p = min(max(p, 0.0), 1.0)
    return rate_1 / ((1 - p) + p / cores)


def rate(rows: list[dict]) -> tuple[float | None, str]:
    """(examples/s, how) of one engine on one core count: the marginal rate
    between the smallest and largest N when both ran, else N / seconds."""
    ok = sorted((r for r in rows if "seconds" in r), key=lambda r: r["n"])
    if not ok:
        return None, "failed"
    lo, hi = ok[0], ok[-1]
    if hi["n"] > lo["n"] and hi["seconds"] > lo["seconds"]:
        return (hi["n"] - lo["n"]) / (hi["seconds"] - lo["seconds"]), (
            f"marginal {lo['n']}-{hi['n']}"
        )
    return hi["n"] / hi["seconds"], f"N={hi['n']}"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict], cores: int) -> tuple[str, list[dict]]:
    """The markdown scaling table of rows carrying "engine", "cores" (1 or
    `cores`), "n" and, when the run worked, "seconds". Returns it with its
    lines as dicts (for latest.json)."""
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    rates = {
        (e, c): rate([r for r in rows if r["engine"] == e and r["cores"] == c])
        for e in engines
        for c in (1, cores)
    }
    ref = {c: rates.get(("reference", c), (None, ""))[0] for c in (1, cores)}
    head = ["engine", "rate", "1 core ex/s", f"{cores} cores ex/s", "speedup", "p",
            *(f"{m} cores (Amdahl) ex/s" for m in PROJECT),
            "x ref 1 core", f"x ref {cores} cores"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out = []
    for e in engines:
        (one, how), (many, _) = rates[(e, 1)], rates[(e, cores)]
        speedup = many / one if one and many else None
        p = parallel_fraction(speedup, cores) if speedup and cores >= 2 else None
        line = {"engine": e, "rate": how, "rate_1": one, "rate_n": many,
                "speedup": speedup, "p": p,
                "projected": {m: amdahl(one, p, m) for m in PROJECT}
                if p is not None else {},
                "x_ref_1": one / ref[1] if one and ref[1] else None,
                "x_ref_n": many / ref[cores] if many and ref[cores] else None}  # fmt: skip
        out.append(line)
        cells = [e, how, _fmt(one, ",.0f"), _fmt(many, ",.0f"),
                 _fmt(speedup, ".2f") + ("x" if speedup else ""), _fmt(p, ".2f"),
                 *(_fmt(line["projected"].get(m), ",.0f") for m in PROJECT),
                 _fmt(line["x_ref_1"], ".2f"), _fmt(line["x_ref_n"], ".2f")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), out
