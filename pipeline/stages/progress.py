"""Progress lines and log levels: what a run tells the user while it works.

Place in the flow: beside the stages, never inside a per-record loop. Both
engines count work in chunks or batches and call `Progress.add`, which reads the
clock once and writes a line to the `seqshards` logger (stderr, INFO) at most
every `INTERVAL_SECONDS`: records so far, records/s, elapsed and, where the
input size is known, the share of input bytes read and an ETA.

The CLI maps `-q/--quiet` (warnings only, no progress), the default (progress)
and `-v/--verbose` (debug lines, Beam's INFO logs) onto logging levels with
`configure_logging`. On the Beam engine `LogProgress` is a side branch of the
read and features stages (fused with them: no data is materialized for it;
`pipeline.beam.progress`);
each worker logs its own lines (in-process runs print them on stderr; on
Dataflow/Flink/Spark they are in the worker logs). The read line counts the
well-framed records; damaged stretches appear in the final summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

LOGGER_NAME = "seqshards"
INTERVAL_SECONDS = 2.0
# Bytes of TFRecord framing per record (length, two CRCs), counted as read.
FRAMING_BYTES = 16

logger = logging.getLogger(LOGGER_NAME)


def verbosity_parser() -> argparse.ArgumentParser:
    """The `-q/--quiet` and `-v/--verbose` flags (a parent parser; dest `verbosity`)."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=-1,
        default=0,
        help="Only warnings and errors on stderr (no progress lines).",
    )
    group.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        help="Debug lines too, and Beam's INFO logs.",
    )
    return parser


def verbosity_of(argv) -> int:
    """-1 / 0 / n for `-q` / nothing / `-v` given n times, from a whole argv."""
    return verbosity_parser().parse_known_args(list(argv))[0].verbosity or 0


def verbosity_level(verbosity: int) -> int:
    """The `seqshards` logger level: -1 quiet, 0 default, >= 1 verbose."""
    if verbosity < 0:
        return logging.WARNING
    return logging.INFO if verbosity == 0 else logging.DEBUG


def configure_logging(verbosity: int = 0) -> None:
    """Sends the `seqshards` logger to stderr at the level of `verbosity`.

    Args:
      verbosity: -1 (`--quiet`: warnings and errors only), 0 (default: progress
        lines) or >= 1 (`-v`: debug lines too, and Beam's INFO logs).
    """
    beam_logger = logging.getLogger("apache_beam")
    for log in (logger, beam_logger):
        for handler in list(log.handlers):
            if getattr(handler, "_seqshards", False):
                log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._seqshards = True
    fmt = "%(message)s" if verbosity < 1 else "%(asctime)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    logger.addHandler(handler)
    logger.setLevel(verbosity_level(verbosity))
    logger.propagate = False
    if verbosity >= 1:  # Beam's INFO logs through this handler only
        beam_logger.addHandler(handler)
    beam_logger.setLevel(logging.INFO if verbosity >= 1 else logging.WARNING)
    beam_logger.propagate = verbosity < 1


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


class Progress:
    """Counts work and logs a line at most every `interval` seconds.

    Usage: `p = Progress("read", total_bytes=n)`, then `p.add(records, nbytes)`
    per chunk and `p.done()` once at the end (always logs its line).
    """

    def __init__(
        self,
        label: str,
        *,
        total_bytes: int | None = None,
        unit: str = "records",
        interval: float = INTERVAL_SECONDS,
        log: logging.Logger | None = None,
    ):
        self.label, self.unit, self.interval = label, unit, interval
        self.total_bytes = total_bytes or None
        self._log = log or logger
        self.count = self.bytes = 0
        self.start = self.last = time.monotonic()
        self._next = self.start + interval

    def add(self, count: int, nbytes: int = 0) -> None:
        """Adds `count` units (and `nbytes` input bytes); may log a line."""
        now = self.last = time.monotonic()
        self.count += count
        self.bytes += nbytes
        if now >= self._next:
            self._next = now + self.interval
            self._log.info("%s", self.line(now))

    def done(self, *, at_last_add: bool = False) -> None:
        """Logs the final line of this stage.

        Args:
          at_last_add: Time the stage up to the last `add` instead of now (for a
            Beam worker's teardown, which can come long after its last element).
        """
        now = self.last if at_last_add else time.monotonic()
        self._log.info("%s", self.line(now, final=True))

    def line(self, now: float, final: bool = False) -> str:
        elapsed = max(now - self.start, 0.0)
        rate = self.count / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {self.count:,} {self.unit}"
        if final:
            return f"{text} in {_duration(elapsed)} ({rate:,.0f} {self.unit}/s), done"
        text += f", {rate:,.0f} {self.unit}/s, {_duration(elapsed)} elapsed"
        if self.total_bytes and self.bytes:
            share = min(self.bytes / self.total_bytes, 1.0)
            eta = elapsed * (1.0 - share) / share
            text += f", {100 * share:.0f} % of input, ETA {_duration(eta)}"
        return text


def chunk_size(chunk) -> tuple[int, int]:
    """(records, bytes incl. framing) of a read chunk `[(position, bytes)]`."""
    return len(chunk), sum(len(data) for _, data in chunk) + FRAMING_BYTES * len(chunk)


def batch_size(batch) -> tuple[int, int]:
    """(examples, 0) of a features output `(key, record, BatchStats)`."""
    return batch[2].examples, 0
