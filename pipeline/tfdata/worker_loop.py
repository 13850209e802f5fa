"""The loop of a tfdata worker process (`workers.ChunkWorkers`): chunks in,
validated and featurized as in the main process, results out.

Place in the flow: **decode/validate -> features** of the main pass, in a
worker process (`worker_start` imports this module there); `Stages` and
`build_stages` are also the engine's own, so both run the same functions.
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from pipeline.stages import decode, features, validate
from pipeline.tfdata import ids
from pipeline.tfdata.batches import take_rows


class Stages(NamedTuple):
    """The per-chunk stages of the main pass, built from the job's config
    (in the main process, or in a worker from the same arguments)."""

    record_spec: decode.RecordSpec
    decoder: decode.Decoder
    policy: validate.Policy
    computer: features.FeatureComputer


def build_stages(config, spec, embedding_weights) -> Stages:
    """The `Stages` of a job: `config` a `JobConfig`, `spec` its columns
    (`ColumnsSpec`), `embedding_weights` {column: table}."""
    record_spec = decode.record_spec(spec.columns, spec.context, config.id_feature)
    return Stages(
        record_spec,
        decode.Decoder(record_spec, strings_as_tensors=True),
        validate.Policy.of(config),
        features.FeatureComputer(
            spec.columns, spec.context, embedding_weights, config.id_feature
        ),
    )


class Valid(NamedTuple):
    """What `drop_duplicates` and `BatchAssigner` read of a chunk's decoded
    batch, for its valid records only (row i: valid record i), and the ids'
    fingerprints (`ids.fingerprints`)."""

    ids: np.ndarray | None
    context: dict
    fingerprints: np.ndarray | None


class Slot:
    """A file in shared memory (/dev/shm when there is one), mapped: one
    chunk's features, written by a worker, read by the main process."""

    def __init__(self, path: str, nbytes: int, create: bool = False):
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
        try:
            if create:
                os.ftruncate(fd, nbytes)  # sparse: pages appear as rows are put
            self._map = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        self.nbytes = nbytes

    def view(self, shape: tuple[int, int]) -> np.ndarray:
        """float32 `shape`, over the slot's first bytes."""
        count = shape[0] * shape[1]
        return np.frombuffer(self._map, np.float32, count).reshape(shape)

    def close(self) -> None:
        self._map.close()


def serve(conn, slot_paths: Sequence[str], slot_bytes: int) -> None:
    """A worker's loop: first its setup (pickled config, spec, embedding
    weights, files), then (slot, chunk) in, the chunk's `_checked` out, until
    None or SIGTERM (`ChunkWorkers.close`)."""
    gc.set_threshold(50_000, *gc.get_threshold()[1:])  # as the engine's run
    config, spec, weights, files = pickle.loads(conn.recv_bytes())
    stages = build_stages(config, spec, weights)
    stages.decoder.parse.get_concrete_function()
    stages.computer.trace()
    slots = [Slot(path, slot_bytes) for path in slot_paths]
    conn.send(("ready", None))
    while True:
        task = conn.recv()
        if task is None:
            break
        slot, chunk = task
        try:
            reply = ("ok", _checked(stages, chunk, files, slots[slot]))
        except Exception as e:  # raised in the main process, at this chunk
            reply = ("error", _picklable(e))
        conn.send(reply)
    for s in slots:
        s.close()


def _picklable(error: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any unpicklable error: its text
        return RuntimeError(f"{type(error).__name__}: {error}")


def _checked(stages: Stages, chunk: list, files: Sequence[str], slot: Slot):
    """A chunk validated and featurized as the in-process path does it
    (`validate.validate_decoded`, `FeatureComputer.flat_rows` over every valid
    record), without the valid records' bytes (None where untruncated)."""
    checked, decoded, rows = validate.validate_decoded(
        stages.decoder, stages.record_spec, chunk, stages.policy, files
    )
    original = dict(chunk)
    valid = [
        (position, length, None if data is original[position] else data)
        for position, length, data in checked.valid
    ]
    lengths = np.fromiter((v[1] for v in valid), np.int64, len(valid))
    depth = stages.computer.depth
    array = None
    shape = (0, depth)
    if len(valid):
        flat = stages.computer.flat_rows(decoded, rows, lengths)
        shape = flat.shape
        if flat.nbytes <= slot.nbytes:
            np.copyto(slot.view(shape), flat)
        else:
            array = flat
    context = {
        name: take_rows(np.asarray(values), np.asarray(row_lengths), rows)
        for name, (values, row_lengths) in decoded.context.items()
    }
    valid_ids = fps = None
    if decoded.ids is not None:
        valid_ids = decoded.ids[rows]
        fps = ids.fingerprints(valid_ids)
    return (
        validate.Checked(valid, checked.errors, checked.ids, checked.truncated),
        Valid(valid_ids, context, fps),
        shape,
        array,
    )
