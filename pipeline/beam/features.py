"""Beam wrapper of features: `ComputeFeatures`, keyed batches -> batch records.

Place in the flow: bucket -> **features** -> write. The layer call is
`pipeline.stages.features.FeatureComputer`'s, built in `setup()`; records
shuffled by reference are read back here (`refs.RecordFetcher`).
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.beam import NAMESPACE, overlap, refs
from pipeline.stages import validate
from pipeline.stages.features import FeatureComputer, load_embedding_weights


class ComputeFeatures(beam.PTransform):
    """(batch_key, members) -> (batch_key, batch record bytes, BatchStats).

    Members are `(position, length, bytes)`; with `files`, bytes may be None:
    they are read back from the input files (`refs.RecordFetcher`, length
    `policy` applied again). `embedding_files` ({column: .npy path}) are loaded
    where the DoFn runs instead of pickling `embedding_weights` into it. With
    `length_in_key` (`--static_shapes`) a batch is padded to T = its key's last
    item (`static_shapes.FormStaticBatches`).
    """

    def __init__(
        self,
        columns,
        context,
        embedding_weights,
        id_feature,
        *,
        files=(),
        policy=None,
        embedding_files=None,
        length_in_key=False,
    ):
        super().__init__()
        weights = {} if embedding_files else dict(embedding_weights or {})
        self._do_fn = _FeaturesDoFn(
            tuple(columns),
            dict(context),
            weights,
            id_feature,
            files=files,
            policy=policy,
            embedding_files=embedding_files,
            length_in_key=length_in_key,
        )

    def expand(self, batches):
        return batches | "SequenceFeatures" >> beam.ParDo(self._do_fn)


class _FeaturesDoFn(beam.DoFn):
    """One batch per element, computed on threads (`overlap.Overlapped`: one
    batch's Python, reading records back and encoding, runs while another's
    parse and layer do); results come out in input order."""

    def __init__(
        self,
        columns,
        context,
        embedding_weights,
        id_feature,
        files=(),
        policy=None,
        embedding_files=None,
        length_in_key=False,
    ):
        self._columns, self._context = columns, context
        self._length_in_key = length_in_key
        self._weights, self._id_feature = embedding_weights, id_feature
        self._files, self._policy = tuple(files), policy
        self._embedding_files = dict(embedding_files or {})
        self._computer = self._fetcher = None
        self._overlap = overlap.Overlapped(self._compute)
        self._written = Metrics.counter(NAMESPACE, "records_written")
        self._batches = Metrics.counter(NAMESPACE, "batches")
        self._padding = Metrics.counter(NAMESPACE, "padding_steps")

    def setup(self):
        weights = self._weights
        if self._embedding_files:
            weights = load_embedding_weights(self._embedding_files)
        self._computer = FeatureComputer(
            self._columns, self._context, weights, self._id_feature
        )
        self._fetcher = refs.RecordFetcher(
            self._files, self._policy or validate.Policy()
        )
        self._overlap.open()

    def start_bundle(self):
        self._overlap.start()

    def _compute(self, item):  # on a pool thread
        key, members = item
        members = self._fetcher.fill(members)
        if self._length_in_key:  # --static_shapes: T is the key's last item
            record, stats = self._computer.batch_record(members, key[-1])
        else:
            record, stats = self._computer.batch_record(members)
        return key, record, stats

    def _emit(self, result):  # on the bundle's thread (metrics live there)
        self._written.inc(result[2].examples)
        self._batches.inc()
        self._padding.inc(result[2].padded_steps)
        return result

    def process(self, item):
        for result in self._overlap.submit(item):
            yield self._emit(result)

    def finish_bundle(self):
        for result in self._overlap.drain():
            yield overlap.in_global_window(self._emit(result))

    def teardown(self):
        self._overlap.close()
        if self._fetcher is not None:
            self._fetcher.close()
