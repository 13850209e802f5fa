"""Figures of `seqshards stats` (stats.png) and `seqshards inspect` (inspect.png).

Place in the flow: beside `stats` and `inspect_output`. matplotlib (the `plot`
extra) is imported on first use, with the Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.stages import bucket
from pipeline.stages.bucket import bucket_range


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def stats_figure(stats, choices: Sequence, path: str, tradeoff=None) -> str:
    """Writes the `seqshards stats` figure to `path`; returns `path`.

    `tradeoff` (`stages.tradeoff.tradeoff` rows) adds a fourth panel: padding
    efficiency against the number of shapes, static and dynamic, per K.
    """
    plt = _pyplot()

    auto = next(c for c in choices if c.name == "auto")
    rows = 4 if tradeoff else 3
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.3 * rows), constrained_layout=True)
    ax = axes[0]
    hist = stats.histogram
    if hist:
        ax.bar(list(hist), list(hist.values()), width=1.0, color="#4878a8")
    _boundary_lines(ax, auto.boundaries, "auto boundaries")
    ax.set(
        xlabel="length (steps)",
        ylabel="examples",
        title=f"Lengths of {len(stats.lengths):,} valid examples",
    )
    ax = axes[1]
    effs = [
        bucket.padding_efficiency(b.real_steps, b.padded_steps) for b in auto.buckets
    ]
    labels = [bucket_range(auto.boundaries, b.bucket) for b in auto.buckets]
    ax.bar(range(len(effs)), effs, color="#55a868")
    ax.set_xticks(range(len(effs)), labels, rotation=60, fontsize=7)
    ax.set(
        ylim=(0, 1.05),
        ylabel="padding efficiency",
        title=f"auto: efficiency per bucket (overall {auto.efficiency:.3f})",
    )
    ax = axes[2]
    names = [c.name for c in choices]
    values = [c.efficiency for c in choices]
    ax.barh(names, values, color="#8172b2")
    for y, v in enumerate(values):
        ax.text(min(v, 1.0) + 0.01, y, f"{v:.3f}", va="center")
    ax.set(xlim=(0, 1.12), xlabel="padding efficiency", title="Bucket choices")
    ax.invert_yaxis()
    if tradeoff:
        _tradeoff_panel(axes[3], tradeoff)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _tradeoff_panel(ax, tradeoff) -> None:
    """Efficiency against distinct [B, T] shapes, one point per K and mode."""
    for mode, color in (("static", "#c44e52"), ("dynamic", "#4878a8")):
        shapes = [row[mode]["shapes"] for row in tradeoff]
        effs = [row[mode]["efficiency"] for row in tradeoff]
        ax.plot(shapes, effs, "o-", color=color, label=mode)
        for row, x, y in zip(tradeoff, shapes, effs, strict=True):
            label = "K=inf" if row["k"] is None else f"K={row['k']}"
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color=color)  # fmt: skip
    ax.set_xscale("log")
    ax.set(
        xlabel="distinct [B, T] shapes (compilations)",
        ylabel="padding efficiency",
        title="Shapes against padding (--max_buckets K, --static_shapes)",
    )
    ax.legend()


def inspect_figure(metadata: Mapping, result, path: str) -> str:
    """Writes the `seqshards inspect` figure to `path`; returns `path`."""
    plt = _pyplot()

    boundaries = metadata["bucket_boundaries"]
    rows = list(result.buckets.values())
    labels = [bucket_range(boundaries, r.bucket) for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 10), constrained_layout=True)
    ax = axes[0]
    ax.bar(range(len(rows)), [r.examples for r in rows], color="#4878a8")
    for i, r in enumerate(rows):
        ax.text(i, r.examples, str(r.batches), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rows)), labels, rotation=60, fontsize=7)
    ax.set(ylabel="examples", title="Examples per bucket (batches on top)")
    ax = axes[1]
    ax.bar(range(len(rows)), [r.efficiency for r in rows], color="#55a868")
    ax.set_xticks(range(len(rows)), labels, rotation=60, fontsize=7)
    ax.set(
        ylim=(0, 1.05),
        ylabel="padding efficiency",
        title=f"Padding efficiency per bucket (overall "
        f"{metadata['padding_efficiency']:.3f})",
    )
    ax = axes[2]
    if result.lengths:
        ax.hist(result.lengths, bins=min(100, max(result.lengths)), color="#8172b2")
    _boundary_lines(ax, boundaries, "bucket boundaries")
    ax.set(
        xlabel="sequence_length",
        ylabel="examples",
        title=f"Lengths of the {len(result.lengths):,} written examples",
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _boundary_lines(ax, boundaries, label: str) -> None:
    """A dashed line between each bucket's last length and the next one's
    first, with one legend entry."""
    for i, b in enumerate(boundaries):
        ax.axvline(
            b + 0.5, color="#c44e52", lw=0.8, ls="--", label=label if i == 0 else None
        )
    if boundaries:
        ax.legend()
