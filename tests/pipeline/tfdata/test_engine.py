"""The tfdata engine's chunking does not show in its output.

Records are read, validated and featurized in chunks, and examples wait for a
full batch in blocks of rows. Tiny chunks and blocks exercise every path on the
small dataset (batches made of many chunks and blocks, examples longer than a
block, several batches of a bucket completed by one chunk with the default
size): the bytes must equal a run with the default sizes.
"""

import numpy as np
import tensorflow as tf
from pipeline_data import BATCH_SIZE, COLUMNS_PY, dir_bytes, frame, good_record

from pipeline import driver
from pipeline.stages import decode, validate
from pipeline.stages.config import JobConfig
from pipeline.tfdata import batches as tfdata_batches
from pipeline.tfdata import chunks, ids, lengths


def _run(dataset, out):
    config = JobConfig(
        input_pattern=dataset["pattern"],
        output_dir=str(out),
        columns_file=dataset["columns"],
        batch_size=BATCH_SIZE,
        engine="tfdata",
        progress=False,
    )
    return driver.run(config, [])


def test_chunk_sizes_do_not_change_the_bytes(dataset, tmp_path, monkeypatch):
    default = _run(dataset, tmp_path / "default")
    monkeypatch.setattr(chunks, "CHUNK", 7)
    monkeypatch.setattr(tfdata_batches, "BLOCK_BYTES", 64)  # a few steps a block
    small = _run(dataset, tmp_path / "small")
    assert small.metadata["counts"] == default.metadata["counts"]
    assert default.metadata["counts"]["batches"] > 3
    assert dir_bytes(tmp_path / "small") == dir_bytes(tmp_path / "default")


def _spec():
    namespace: dict = {}
    exec(COLUMNS_PY, namespace)
    return decode.record_spec(namespace["COLUMNS"], namespace["CONTEXT"], "id")


def test_lengths_pass_tfdata_and_reader_paths_agree(tmp_path):
    """Healthy files take the tf.data path; it must count what the reader path
    counts (first position of an id wins, the length policy applies)."""
    rng = np.random.default_rng(0)
    records = [good_record(rng, f"id{i % 40}") for i in range(90)]  # duplicates
    files = []
    for k in range(2):
        path = tmp_path / f"in-{k}.tfrecord"
        path.write_bytes(b"".join(frame(r) for r in records[k * 45 : (k + 1) * 45]))
        files.append(str(path))
    light = decode.length_spec(_spec())
    for policy in (
        validate.Policy(),
        validate.Policy(max_length=5, on_long="truncate"),
        validate.Policy(max_length=5),
    ):
        fast = lengths.count_lengths(
            lengths._tfdata_lengths(files, light), policy, None
        )
        exact = lengths.count_lengths(
            lengths._reader_lengths(files, light, policy), policy, None
        )
        assert fast.histogram == exact.histogram and sum(fast.histogram.values()) > 0
        want = ids.fingerprints(np.asarray([f"id{i}".encode() for i in range(40)]))
        np.testing.assert_array_equal(fast.repeated, np.sort(want))
        np.testing.assert_array_equal(exact.repeated, fast.repeated)
    assert sum(fast.histogram.values()) < 40  # ids seen once; long ones left out


def test_colliding_fingerprints_keep_distinct_ids(dataset, tmp_path, monkeypatch):
    """Every id given one fingerprint: all records are suspects, the ids
    themselves decide (in the lengths pass and the main pass), and the bytes
    equal a run with the real fingerprints."""
    default = _run(dataset, tmp_path / "default")
    real = ids.summarize

    def colliding(values):
        fps, sizes, blob = real(values)
        return tf.zeros_like(fps), sizes, blob

    monkeypatch.setattr(ids, "summarize", colliding)
    collided = _run(dataset, tmp_path / "collided")
    assert collided.metadata["counts"] == default.metadata["counts"]
    assert dir_bytes(tmp_path / "collided") == dir_bytes(tmp_path / "default")


def test_id_log_finds_repeated_fingerprints_and_later_duplicates():
    """`IdLog`: repeated fingerprints; of records sharing an id, the later
    ones' counted lengths are dropped (not those counted 0 or -1)."""
    log = ids.IdLog()
    names = [b"a", b"b", b"a", b"c", b"b", b"a"]
    batch = ids.id_batch(np.asarray(names, object))
    log.add(ids.IdBatch(batch.fingerprints[:3], batch.sizes[:3], b"aba"), [3, 4, 5])
    log.add(ids.IdBatch(batch.fingerprints[3:], batch.sizes[3:], b"cba"), [6, 0, -1])
    repeated, dropped = log.finish()
    assert sorted(repeated.tolist()) == sorted(set(batch.fingerprints[[0, 1]].tolist()))
    assert dropped.tolist() == [5]  # the second "a"; the second "b" counted 0


def test_open_batches_hold_each_example_once_in_blocks(monkeypatch):
    """Examples get rows of blocks in order (a batch spans blocks; an example
    longer than a block gets its own); `fill` copies a chunk's rows there in
    bucket order; written blocks are reused, never while a batch holds them."""
    monkeypatch.setattr(tfdata_batches, "BLOCK_BYTES", 4 * 2 * 5)  # 5 rows, D=2
    blocks = tfdata_batches.Blocks(2)
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 8, size=12).astype(np.int64)
    rows = np.arange(2 * lengths.sum(), dtype=np.float32).reshape(-1, 2)
    starts = np.cumsum(lengths) - lengths
    order = np.concatenate([np.arange(0, 12, 2), np.arange(1, 12, 2)])  # 2 buckets
    batches, fills = [], []
    for members in (order[:6], order[6:]):
        batch = tfdata_batches.OpenBatch(8)
        ctx = {"c": (members.astype(np.int64), np.ones(6, np.int64))}
        fills += batch.add(lengths[members], ctx, None, blocks)
        batches.append(batch)
    tfdata_batches.fill(rows, lengths, order, fills)
    held = {id(b) for batch in batches for b in batch.blocks()}
    assert len(held) > 2 and all(
        len(b) >= 5 for batch in batches for b in batch.blocks()
    )
    for batch, members in zip(batches, (order[:6], order[6:]), strict=True):
        runs, got_lengths, context, ids = batch.contents()
        assert got_lengths.tolist() == lengths[members].tolist() and ids is None
        steps = np.concatenate([r for r, _ in runs])
        want = np.concatenate(
            [
                rows[s : s + n]
                for s, n in zip(starts[members], lengths[members], strict=True)
            ]
        )
        np.testing.assert_array_equal(steps, want)
        assert context["c"][0].tolist() == members.tolist()
    for block in batches[0].blocks():
        blocks.put(block)
    again = blocks.get(1)
    assert id(again) in {id(b) for b in batches[0].blocks()}
    assert id(again) not in {id(b) for b in batches[1].blocks()}
