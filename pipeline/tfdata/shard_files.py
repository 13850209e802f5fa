"""The tfdata engine's shard files, written here or by a writer process.

Place in the flow: batches -> **write** (`engine.ShardWriter` hands each full
batch over, in order, to one of these sinks):

  ShardFiles     the files themselves: batch k's record (`record_pieces`) goes
                 to shard `output.shard_of(k)`; counts what it wrote
  WriterProcess  the same `ShardFiles` in a process of its own: with worker
                 processes (`workers`), building the records (a piece per
                 example, framing, CRC) no longer holds the main process's
                 GIL. A batch's contents are sent pickled (its steps copied
                 once more, into the pipe); the counts come back at `close`.

The bytes are the same: both build each record with the same
`RecordMaker.record_pieces` and write it with `output.RecordWriter`.
"""

from __future__ import annotations

import collections
import pickle
import threading
from typing import NamedTuple

from pipeline.stages import metadata, output
from pipeline.stages.features import RecordMaker
from pipeline.tfdata import worker_start


class ShardCounts(NamedTuple):
    """What `ShardFiles` wrote: batches and examples per shard, `totals`
    (`metadata.Totals`), `shapes` {(B, T): batches}, `checksums` {shard file:
    (size, CRC32C)} computed while writing (uncompressed shards only), so
    metadata.json's `files` need not read the shards back."""

    batches: list
    examples: list
    totals: metadata.Totals
    shapes: dict
    checksums: dict

    def entries(self) -> list[dict]:
        """metadata.json's `shards`, in shard order."""
        n = len(self.batches)
        return [
            output.shard_entry(i, n, self.batches[i], self.examples[i])
            for i in range(n)
        ]


class ShardFiles:
    """The shard files of a run, written batch by batch in the order given
    (`record_pieces`: `RecordMaker.record_pieces` or the layer's)."""

    def __init__(
        self, directory: str, num_shards: int, compression: str, record_pieces
    ):
        self._n, self._record_pieces = num_shards, record_pieces
        self._writers = [
            output.RecordWriter(
                f"{directory}/{output.shard_file(i, num_shards)}", compression
            )
            for i in range(num_shards)
        ]
        self.batches = [0] * num_shards
        self.examples = [0] * num_shards
        self.totals = metadata.Totals()
        self.shapes: collections.Counter = collections.Counter()

    def write(self, contents: tuple, length: int | None) -> None:
        """Writes one batch (`OpenBatch.contents()`, T or None) as the next."""
        pieces, stats = self._record_pieces(*contents, length)
        k = output.shard_of(self.totals.batches, self._n)
        self._writers[k].write(pieces)
        self.batches[k] += 1
        self.examples[k] += stats.examples
        self.totals.add(stats)
        steps = stats.real_steps + stats.padded_steps
        self.shapes[(stats.examples, steps // max(1, stats.examples))] += 1

    def close(self) -> ShardCounts:
        """Closes the files (remote: uploads them); returns what was written."""
        for w in self._writers:
            w.close()
        sums = {
            output.shard_file(i, self._n): w.checksum()
            for i, w in enumerate(self._writers)
        }
        self._writers = []
        return ShardCounts(
            self.batches,
            self.examples,
            self.totals,
            dict(self.shapes),
            {rel: s for rel, s in sums.items() if s is not None},
        )


def serve(conn, directory: str, num_shards: int, compression: str, maker: bytes):
    """The writer process's loop: (contents, T) in, written; at None the
    files are closed and their `ShardCounts` sent back; an error is sent back
    instead (raised by `WriterProcess.close`). `maker`: the pickled
    `RecordMaker` (unpickled here, after `worker_start`'s quiet import)."""
    try:
        maker = pickle.loads(maker)
        files = ShardFiles(directory, num_shards, compression, maker.record_pieces)
        while (item := conn.recv()) is not None:
            files.write(*item)
        conn.send(("ok", files.close()))
    except Exception as e:  # raised in the main process
        try:
            conn.send(("error", pickle.loads(pickle.dumps(e))))
        except Exception:  # noqa: BLE001 - unpicklable: its text
            conn.send(("error", RuntimeError(f"{type(e).__name__}: {e}")))


class WriterProcess:
    """`ShardFiles` in a process of its own; `write` sends it a batch (blocks
    while the pipe is full: the writer's pace bounds what waits), `close`
    returns its `ShardCounts` (raises its error)."""

    def __init__(
        self,
        directory: str,
        num_shards: int,
        compression: str,
        maker: RecordMaker,
        quiet: bool = True,
    ):
        context = worker_start.context()
        self._conn, theirs = context.Pipe()
        self._proc = context.Process(
            target=worker_start.start,
            args=(
                "pipeline.tfdata.shard_files",
                "serve",
                (theirs, directory, num_shards, compression, pickle.dumps(maker)),
                quiet,
            ),
            name="seqshards-writer",
            daemon=True,
        )
        # Started on a thread: the start may wait for the forkserver's imports.
        self._started = threading.Thread(
            target=lambda: (self._proc.start(), theirs.close()),
            name="seqshards-writer-start",
        )
        self._started.start()
        self._counts: ShardCounts | None = None
        self._failure: Exception | None = None

    def write(self, contents: tuple, length: int | None) -> None:
        """Sends one batch to be written next."""
        self._started.join()
        try:
            self._conn.send((contents, length))
        except OSError:  # the writer stopped: `close` raises its error
            self.close()
            raise

    def close(self) -> ShardCounts:
        """Waits for every batch sent to be written; returns the counts (raises
        the writer's error, again at each call)."""
        if self._failure is not None:
            raise self._failure
        self._started.join()
        if self._counts is None:
            try:
                self._conn.send(None)
            except OSError:
                pass  # it stopped: its error may be waiting in the pipe
            try:
                status, result = self._conn.recv()
            except (OSError, EOFError):
                self._proc.join(5)
                self._failure = RuntimeError(
                    "The tfdata engine's writer process exited (code "
                    f"{self._proc.exitcode}) before closing the shard files: "
                    "see its error above (disk full? out of memory?)"
                )
                raise self._failure from None
            finally:
                self._proc.join(10)
                if self._proc.is_alive():
                    self._proc.terminate()
                self._conn.close()
            if status == "error":
                self._failure = result
                raise result
            self._counts = result
        return self._counts
