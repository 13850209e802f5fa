"""The analyze pass (`--analyze`): vocabularies and normalization statistics.

Place in the flow: config (the spec's requests) -> **analyze** -> DIR/assets ->
spec rebuilt with the results -> materialize. This module holds the
engine-neutral part (requests, accumulators, ranking, the assets); the passes
are `pipeline.beam.analyze` and `pipeline.tfdata.analyze`, chosen by the
driver (`pipeline.driver.analyze`).

A declarative spec asks for analysis per column (`spec`): a vocabulary_file
column with `analyze:` whose file does not exist yet (a `VocabularyRequest`),
or a numeric column with `normalizer: zscore|minmax` (a `StatsRequest`). The
pass reads the input, keeps exactly the records the job will write (validated
with the same spec and policy, duplicate ids dropped) and computes, per key:

  * statistics over every present value of every step: count, mean, std
    (population), min, max. Sums are exact: every float32 value is an integer
    multiple of 2**-149, so sum(x) and sum(x^2) are accumulated as Python ints
    (vectorized per exponent, `Moments`); mean and variance are then rounded
    once. Merging is integer addition, so any partitioning (Beam in-process,
    multi-process, tf.data) gives the same bits.
  * vocabularies: occurrences per value (values holding a newline cannot be a
    line of a vocabulary file and are skipped), those seen >=
    `frequency_threshold` times, ordered by count descending then value
    ascending (bytes / ints), the first `top_k`.

Results go to DIR/assets (inside the staging directory, so they appear with
DIR atomically): one vocabulary file per request, `DIR/assets/<name>` (the
base name of the declared `path`), one value a line, and
`DIR/assets/stats.json` (`indent=2, sort_keys=True`):

    {"version": 1,
     "numeric": {key: {count, mean, std, min, max, normalizers: [...]}},
     "vocabularies": {name: {key, file, size, top_k, frequency_threshold}}}

The materialize pass then uses them: `transforms.zscore(mean, std)` /
`transforms.minmax(min, max)` as the numeric column's `normalizer_fn`, and the
written file as the vocabulary file. Without values, stats are count 0 and
zeros (the normalizer is then the identity); an empty vocabulary is an error.
"""

from __future__ import annotations

import dataclasses
import fractions
import heapq
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from pipeline.stages import decode, fileio
from pipeline.stages.paths import ASSETS_DIR

STATS_FILE = "stats.json"
STATS_VERSION = 1
NORMALIZERS = ("zscore", "minmax")
# Float32 values are multiples of 2**-149: sums are kept scaled by 2**_SCALE.
_SCALE = 173  # x = m * 2**(e - 24), |m| < 2**24, e >= -148 -> x * 2**173 integer


@dataclasses.dataclass(frozen=True)
class VocabularyRequest:
    """A vocabulary the pass computes (written to DIR/assets/<asset>).

    Attributes:
      key: Feature-list key whose values are counted.
      dtype: "string", "int64" or "int32".
      asset: File name under DIR/assets.
      top_k: Keep at most this many values (None: all).
      frequency_threshold: Keep values seen at least this many times.
      where: Key path in the spec (for messages; not part of equality).
    """

    key: str
    dtype: str
    asset: str
    top_k: int | None = None
    frequency_threshold: int = 1
    where: str = dataclasses.field(default="", compare=False)


@dataclasses.dataclass(frozen=True)
class StatsRequest:
    """Statistics of a numeric feature for a `normalizer` ("zscore"/"minmax")."""

    key: str
    normalizer: str
    where: str = dataclasses.field(default="", compare=False)


def check_requests(requests: Iterable) -> tuple:
    """Drops repeated requests; refuses two different vocabularies under one name.

    Raises:
      ValueError: one asset name for different keys / top_k / thresholds.
    """
    out, assets = [], {}
    for request in requests:
        if request in out:
            continue
        if isinstance(request, VocabularyRequest):
            if request.asset == STATS_FILE:
                raise ValueError(
                    f"Invalid columns spec: {request.where} asks for a vocabulary "
                    f"file named {STATS_FILE!r}, the name of the analyze statistics "
                    "in DIR/assets; give its `path` another base name."
                )
            other = assets.setdefault(request.asset, request)
            if other != request:
                raise ValueError(
                    f"Invalid columns spec: {other.where} and {request.where} ask for "
                    f"different vocabularies with one file name {request.asset!r}; "
                    "give them different `path` names."
                )
        out.append(request)
    return tuple(out)


# --- exact moments -------------------------------------------------------------------


class Moments(NamedTuple):
    """Mergeable exact statistics of float32 values.

    `total` = sum(x) * 2**173 and `squares` = sum(x^2) * 2**346, both exact ints.
    """

    count: int = 0
    total: int = 0
    squares: int = 0
    min: float = math.inf
    max: float = -math.inf

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        """Moments of float32 `values` (vectorized: one int64 sum per exponent)."""
        values = np.asarray(values)
        if values.size == 0:
            return cls()
        if values.dtype != np.float32:
            raise TypeError(
                "Invalid value for argument `values`. Expected float32 values. "
                f"Received: dtype={values.dtype}"
            )
        mantissa, exponent = np.frexp(values.astype(np.float64))
        m = (mantissa * (1 << 24)).astype(np.int64)  # exact: 24-bit significands
        order = np.argsort(exponent, kind="stable")
        exponent, m = exponent[order], m[order]
        bins, starts = np.unique(exponent, return_index=True)
        a = np.abs(m)
        hi, lo = a >> 12, a & 0xFFF  # m^2 = hi^2 2^24 + 2 hi lo 2^12 + lo^2
        sums = [
            np.add.reduceat(x, starts).tolist() for x in (m, hi * hi, hi * lo, lo * lo)
        ]
        total = squares = 0
        for e, s, hh, hl, ll in zip(bins.tolist(), *sums, strict=True):
            total += s << (e + 149)
            squares += ((hh << 24) + (hl << 13) + ll) << (2 * e + 298)
        return cls(
            int(values.size), total, squares, float(values.min()), float(values.max())
        )

    def merge(self, other: Moments) -> Moments:
        return Moments(
            self.count + other.count,
            self.total + other.total,
            self.squares + other.squares,
            min(self.min, other.min),
            max(self.max, other.max),
        )

    def finalize(self) -> dict:
        """`{count, mean, std, min, max}`, each rounded once from the exact sums."""
        if not self.count:
            return {"count": 0, "mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
        mean = fractions.Fraction(self.total, self.count << _SCALE)
        variance = fractions.Fraction(self.squares, self.count << 2 * _SCALE) - mean**2
        return {
            "count": self.count,
            "mean": float(mean),
            "std": math.sqrt(float(variance)),
            "min": self.min,
            "max": self.max,
        }


# --- vocabularies --------------------------------------------------------------------


def value_counts(values: np.ndarray) -> dict:
    """Occurrences per value (bytes or int); values holding a newline are skipped."""
    if len(values) == 0:
        return {}
    unique, counts = np.unique(values, return_counts=True)
    out = {}
    for value, count in zip(unique.tolist(), counts.tolist(), strict=True):
        if isinstance(value, bytes) and (b"\n" in value or b"\r" in value):
            continue
        out[value] = count
    return out


def rank_values(counts: Mapping, limit: int | None) -> list[tuple]:
    """`(value, count)` by count descending, value ascending; the first `limit`."""
    order = ((-c, v) for v, c in counts.items())
    best = sorted(order) if limit is None else heapq.nsmallest(limit, order)
    return [(v, -c) for c, v in best]


def vocabulary(ranked: Sequence[tuple], request: VocabularyRequest) -> list:
    """The values of `request` from its key's ranked `(value, count)` list."""
    kept = [v for v, c in ranked if c >= request.frequency_threshold]
    return kept if request.top_k is None else kept[: request.top_k]


def request_limits(requests) -> dict[str, int | None]:
    """Per key: how many ranked values the vocabularies of it need (None: all)."""
    limits: dict[str, int | None] = {}
    for r in requests:
        if isinstance(r, VocabularyRequest):
            old = limits.get(r.key, 0)
            limits[r.key] = (
                None if old is None or r.top_k is None else max(old, r.top_k)
            )
    return limits


# --- the shared computation ----------------------------------------------------------


def value_spec(record_spec: decode.RecordSpec, requests) -> decode.RecordSpec:
    """A record spec parsing only the requested feature lists."""
    keys = sorted({r.key for r in requests})
    return decode.RecordSpec({k: record_spec.sequence[k] for k in keys}, {}, {}, {})


def partial_results(
    decoder: decode.Decoder, serialized: Sequence[bytes], requests
) -> tuple[dict[str, Moments], dict[str, dict]]:
    """Moments and value counts of valid records (`decoder` from `value_spec`)."""
    decoded = decoder.decode(list(serialized))
    if decoded.parse_errors:  # records were validated with a superset spec
        raise RuntimeError(f"Valid records failed to parse: {decoded.parse_errors}")
    moments, counts = {}, {}
    for key in sorted({r.key for r in requests if isinstance(r, StatsRequest)}):
        moments[key] = Moments.of(decoded.features[key][0])
    for key in sorted({r.key for r in requests if isinstance(r, VocabularyRequest)}):
        counts[key] = value_counts(decoded.features[key][0])
    return moments, counts


def _line(value) -> bytes:
    return value if isinstance(value, bytes) else str(int(value)).encode()


def write_assets(
    directory: str,
    requests,
    moments: Mapping[str, Moments],
    ranked: Mapping[str, Sequence[tuple]],
) -> dict:
    """Writes DIR/assets/<vocabulary files> and DIR/assets/stats.json.

    Returns:
      The stats.json document.

    Raises:
      ValueError: an empty vocabulary.
    """
    assets = f"{directory}/{ASSETS_DIR}"
    fileio.makedirs(assets)
    doc = {"version": STATS_VERSION, "numeric": {}, "vocabularies": {}}
    for r in requests:
        if isinstance(r, StatsRequest):
            entry = doc["numeric"].setdefault(
                r.key, {**moments.get(r.key, Moments()).finalize(), "normalizers": []}
            )
            entry["normalizers"] = sorted(set(entry["normalizers"]) | {r.normalizer})
            continue
        values = vocabulary(ranked.get(r.key, ()), r)
        if not values:
            raise ValueError(
                f"The analyzed vocabulary of feature {r.key!r} ({r.where}) is empty: no "
                f"value occurs >= frequency_threshold={r.frequency_threshold} times in "
                "the valid records. Lower the threshold or check the input."
            )
        fileio.write_bytes(
            f"{assets}/{r.asset}", b"".join(_line(v) + b"\n" for v in values)
        )
        doc["vocabularies"][r.asset] = {
            "key": r.key,
            "file": f"{ASSETS_DIR}/{r.asset}",
            "size": len(values),
            "top_k": r.top_k,
            "frequency_threshold": r.frequency_threshold,
        }
    fileio.write_bytes(
        f"{assets}/{STATS_FILE}",
        (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(),
    )
    return doc


@dataclasses.dataclass(frozen=True)
class Analysis:
    """The results the spec builds its columns with (from DIR/assets/stats.json)."""

    directory: str
    numeric: Mapping[str, Mapping]
    vocabularies: Mapping[str, Mapping]

    def normalizer(self, key: str, kind: str):
        """`transforms.zscore` / `transforms.minmax` from the stats of `key`."""
        import transforms

        stats = self.numeric.get(key)
        if stats is None:
            return None
        if kind == "zscore":
            return transforms.zscore(stats["mean"], stats["std"])
        return transforms.minmax(stats["min"], stats["max"])

    def vocabulary_file(self, asset: str) -> str | None:
        entry = self.vocabularies.get(asset)
        return None if entry is None else f"{self.directory}/{entry['file']}"


def asset_files(directory: str) -> list[str]:
    """The files under DIR/assets, as sorted paths relative to DIR (metadata.json
    lists them)."""
    assets = f"{directory}/{ASSETS_DIR}"
    if not fileio.isdir(assets):
        return []
    return sorted(f"{ASSETS_DIR}/{name}" for name in fileio.listdir(assets))


def load_analysis(directory: str) -> Analysis:
    """Reads DIR/assets/stats.json."""
    doc = json.loads(fileio.read_bytes(f"{directory}/{ASSETS_DIR}/{STATS_FILE}"))
    return Analysis(directory, doc["numeric"], doc["vocabularies"])
