"""Shards written once: `WriteShards`, formed batches -> shard files.

Place in the flow: bucket -> **features -> write** -> metadata. Batch keys
(small) are all the job needs to place a batch: a batch of rank r in key order
goes to shard `output.shard_of(r, N)`, as before. The ranks come from counts
before the batches are formed (`bucket.BatchRanks`, `static_shapes.
FormStaticBatches`: one side input, one entry per batch), each batch's members
(`(position, length, bytes | extent)`, the shuffle payload) go to their shard
in one grouping, and the worker holding a shard's batches computes and writes
the shard, batch after batch in key order: under a temporary name, renamed
into place when complete (an object store: the object appears whole on upload,
under the run's staging prefix). The shard's bytes cross this process once: no
piece files, no copy.

Features are computed as the tfdata engine does (parse once, flat rows): the
records of several consecutive batches (`GROUP_RECORDS`) are decoded in one
call (`decode.Decoder`), their steps computed unpadded in one layer call
(`FeatureComputer.flat_rows`), and each batch record is written from views of
those rows plus shared zeros for the padding (`FeatureComputer.record_pieces`,
`output.RecordWriter`): the same bytes as `FeatureComputer.batch_record`. The
groups are computed on a small pool (`overlap.Overlapped`: reading records
back and the Python around the layer run while another group's parse does),
and written in order.

Retries: a shard is one element; a retried attempt recomputes it from the same
members and writes the same bytes to a new temporary name, then replaces the
file (`output.publish_file`): reruns and retries are byte-identical. Gzip
shards hold one gzip member per batch (what `output.write_records` writes for
one record), made in memory (`ram://`).
"""

from __future__ import annotations

import collections
import itertools
import uuid
from collections.abc import Sequence

import apache_beam as beam
import google_crc32c
import numpy as np
import tensorflow as tf

from pipeline.beam import overlap, refs
from pipeline.beam.features import BatchCounters
from pipeline.stages import decode, fileio, output, validate
from pipeline.stages.batch_format import join_pieces
from pipeline.stages.features import FeatureComputer, load_embedding_weights

# Records decoded and computed together (one parse, one layer call).
GROUP_RECORDS = 1024


class WriteShards(beam.PTransform):
    """(batch_key, members) -> shard files; returns outputs `SHARDS`, per
    shard `(index, output.shard_entry, (batches, examples, real steps, padded
    steps), [((B, T), batches)], (size, CRC32C hex))` (empty shards included;
    the checksum computed as it was written, for metadata.json's `files`),
    and `WRITTEN`, the examples of each batch written (0 as a shard starts).

    Args:
      directory: Where shards/ is (the staging directory).
      num_shards: N.
      compression: "none" or "gzip".
      features: `ShardFeatures`: how a shard's records become batch records.
      ranks: A singleton `{batch_key: rank}` of every batch, known before the
        batches are formed (`bucket.BatchRanks`, `static_shapes.
        FormStaticBatches`), so the formed batches go straight to their shard
        (a runner need not hold them all once more to rank their keys); or
        None: the input is already placed, `(shard, [(batch_key, members)])`,
        a batch possibly in several pieces (`bucket.PlaceRecords`), joined
        here in position order.
    """

    def __init__(
        self, directory: str, num_shards: int, compression: str, features, ranks=None
    ):
        super().__init__()
        self._directory, self._num_shards = directory, num_shards
        self._compression, self._features = compression, features
        self._ranks = ranks

    # (batch_key, members), or placed: (shard, [(batch_key, members)])
    def expand(self, formed):
        n = self._num_shards
        assigned = formed
        if self._ranks is not None:
            assigned = formed | "ToShard" >> beam.Map(
                lambda batch, ranks: (shard_of_batch(batch[0], ranks, n), [batch]),
                ranks=beam.pvalue.AsSingleton(self._ranks),
            )
        every_shard = (  # empty shards are files too
            formed.pipeline
            | "ShardIndices" >> beam.Create([(i, None) for i in range(n)])
        )
        return (
            (assigned, every_shard)
            | "WithEveryShard" >> beam.Flatten()
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.ParDo(
                _WriteShardDoFn(self._directory, n, self._compression, self._features)
            ).with_outputs(WRITTEN, main=SHARDS)
        )


SHARDS = "shards"
WRITTEN = "written"  # examples per batch written (progress lines)


def examples_measure(examples: int) -> tuple[int, int]:
    """`(examples, 0)` of a `WRITTEN` element (`progress.LogProgress`)."""
    return examples, 0


class ShardFeatures:
    """What the shard writer needs to compute batch records; plain, picklable.

    Args:
      record_spec: `decode.RecordSpec` of the columns.
      columns, context, id_feature: The layer's columns and CONTEXT.
      embedding_weights: {column: table}, or {} with `embedding_files`.
      embedding_files: {column: .npy path}, loaded where the DoFn runs.
      files: Input paths by file index (records shuffled by reference).
      policy: The length policy, applied again to records read back.
      length_in_key: `--static_shapes`: T is the batch key's last item.
    """

    def __init__(
        self,
        *,
        record_spec,
        columns,
        context,
        id_feature,
        embedding_weights=None,
        embedding_files=None,
        files: Sequence[str] = (),
        policy: validate.Policy | None = None,
        length_in_key: bool = False,
    ):
        self.record_spec, self.columns = record_spec, tuple(columns)
        self.context, self.id_feature = dict(context), id_feature
        self.embedding_files = dict(embedding_files or {})
        self.embedding_weights = (
            {} if self.embedding_files else dict(embedding_weights or {})
        )
        self.files, self.policy = tuple(files), policy or validate.Policy()
        self.length_in_key = length_in_key


def groups(batches: list, limit: int = GROUP_RECORDS) -> list[list]:
    """Consecutive `(key, members)` batches in groups of at most `limit`
    records (a batch larger than `limit` alone), in order."""
    out, size = [], 0
    for batch in batches:
        if out and out[-1] and size + len(batch[1]) <= limit:
            out[-1].append(batch)
            size += len(batch[1])
        else:
            out.append([batch])
            size = len(batch[1])
    return out


def shard_of_batch(batch_key, ranks, n: int) -> int:
    """The shard of the batch `batch_key`: its rank in key order (`ranks`,
    `{batch_key: rank}`) decides it (`output.shard_of`)."""
    return output.shard_of(ranks[batch_key], n)


def joined_pieces(pieces) -> list[tuple]:
    """Lists of `(batch_key, members)` pieces -> one `(batch_key, members)`
    per batch, in key order. A batch in one piece keeps its order (static
    remainder batches are not in position order); one in several
    (`bucket.PlaceRecords`: a piece per chunk holding its records) is in
    position order, as `FormBatches` forms it."""
    by_key = collections.defaultdict(list)
    for key, members in itertools.chain.from_iterable(pieces):
        by_key[key].append(members)
    batches = []
    for key in sorted(by_key):
        parts = by_key[key]
        if len(parts) > 1:
            parts = [sorted((m for part in parts for m in part), key=_position)]
        batches.append((key, parts[0]))
    return batches


def _position(member) -> tuple:
    return member[0]


def ragged_slice(values, row_lengths: np.ndarray, start: int, stop: int):
    """Rows [start, stop) of a ragged `(values, row_lengths)` pair."""
    ends = np.concatenate([[0], np.cumsum(row_lengths)])
    return values[ends[start] : ends[stop]], row_lengths[start:stop]


def gzip_member(pieces) -> bytes:
    """One TFRecord (given as pieces) as one gzip member: the bytes
    `output.write_records(path, [record], "gzip")` writes (TensorFlow's
    writer, into the in-memory `ram://` file system)."""
    path = f"ram://seqshards-gzip/{uuid.uuid4().hex}"
    writer = tf.io.TFRecordWriter(path, output.record_options("gzip"))
    writer.write(join_pieces(pieces))
    writer.close()
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    tf.io.gfile.remove(path)
    return data


def _abandon(writer, tmp: str) -> None:
    """Closes a failed attempt's shard writer without completing its file."""
    if isinstance(writer, output.RecordWriter):
        writer.abort()
    elif hasattr(writer, "discard"):  # a remote object: not uploaded
        writer.discard()
    else:
        writer.close()
        fileio.remove(tmp)


class _WriteShardDoFn(beam.DoFn):
    """(shard index, [[(batch_key, members)] | None]) -> the shard file and its
    counts (see `WriteShards`)."""

    def __init__(self, directory, num_shards, compression, features: ShardFeatures):
        self._directory, self._n = directory, num_shards
        self._compression, self._features = compression, features
        self._decoder = self._computer = self._fetcher = None
        self._overlap = overlap.Overlapped(self._compute)
        self._counters = BatchCounters()

    def setup(self):
        f = self._features
        weights = f.embedding_weights
        if f.embedding_files:
            weights = load_embedding_weights(f.embedding_files)
        self._computer = FeatureComputer(f.columns, f.context, weights, f.id_feature)
        self._decoder = decode.Decoder(f.record_spec, strings_as_tensors=True)
        self._fetcher = refs.RecordFetcher(f.files, f.policy)
        self._overlap.open()

    def _compute(self, group):  # on a pool thread: one parse, one layer call
        members = self._fetcher.fill([m for _, ms in group for m in ms])
        decoded = self._decoder.decode([data for _, _, data in members])
        if decoded.parse_errors:
            raise RuntimeError(
                f"Validated records failed to parse: {decoded.parse_errors} (a "
                "bug, or the input changed while the job ran)"
            )
        lengths = np.asarray([m[1] for m in members], np.int64)
        rows = self._computer.flat_rows(decoded, np.arange(len(members)), lengths)
        return group, decoded, rows, lengths

    def _records(self, computed):
        """(pieces, BatchStats) per batch of a computed group, in order."""
        group, decoded, rows, lengths = computed
        ends = np.concatenate([[0], np.cumsum(lengths)])
        at = 0
        for key, members in group:
            stop = at + len(members)
            context = {
                name: ragged_slice(values, row_lengths, at, stop)
                for name, (values, row_lengths) in decoded.context.items()
            }
            ids = None if decoded.ids is None else decoded.ids[at:stop]
            runs = [(rows[ends[at] : ends[stop]], lengths[at:stop])]
            t = key[-1] if self._features.length_in_key else None
            yield self._computer.record_pieces(runs, lengths[at:stop], context, ids, t)
            at = stop

    def process(self, item):
        index, pieces = item
        batches = joined_pieces(p for p in pieces if p is not None)
        path = f"{self._directory}/{output.shard_file(index, self._n)}"
        tmp = output.temporary_path(path)
        gzip = self._compression == "gzip"
        writer = fileio.open_write(tmp) if gzip else output.RecordWriter(tmp)
        totals, shapes = [0, 0, 0, 0], collections.Counter()
        written = [0, 0]  # gzip: (size, CRC32C) of the members written
        self._overlap.start()

        def write(computed):  # in order, on the bundle's thread
            for pieces, stats in self._records(computed):
                if gzip:
                    member = gzip_member(pieces)
                    writer.write(member)
                    written[0] += len(member)
                    written[1] = google_crc32c.extend(written[1], member)
                else:
                    writer.write(pieces)
                totals[0] += 1
                totals[1] += stats.examples
                totals[2] += stats.real_steps
                totals[3] += stats.padded_steps
                steps = stats.real_steps + stats.padded_steps
                shapes[(stats.examples, steps // stats.examples)] += 1
                self._counters.add(stats)
                yield beam.pvalue.TaggedOutput(WRITTEN, stats.examples)

        try:  # at most `overlap` in-flight groups are held, not the shard
            # Starts the progress clock: the first batch is written only after
            # its group (and the groups in flight beside it) are computed.
            yield beam.pvalue.TaggedOutput(WRITTEN, 0)
            for group in groups(batches):
                for computed in self._overlap.submit(group):
                    yield from write(computed)
            for computed in self._overlap.drain():
                yield from write(computed)
        except BaseException:  # no partial shard, local or uploaded
            _abandon(writer, tmp)
            raise
        writer.close()
        output.publish_file(tmp, path)
        entry = output.shard_entry(index, self._n, totals[0], totals[1])
        checksum = (written[0], f"{written[1]:08x}") if gzip else writer.checksum()
        yield index, entry, tuple(totals), sorted(shapes.items()), checksum

    def teardown(self):
        self._overlap.close()
        if self._fetcher is not None:
            self._fetcher.close()
