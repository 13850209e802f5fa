"""The shard writer: batches computed where their shard is written, written once."""

import os

import google_crc32c
import numpy as np
import pytest
from pipeline_data import COLUMNS_PY, frame, good_record

from pipeline.beam import shards
from pipeline.stages import decode, output, tfrecord, validate
from pipeline.stages.features import FeatureComputer, build_embedding_weights

NAMESPACE: dict = {}
exec(COLUMNS_PY, NAMESPACE)  # the test data's columns
COLUMNS, CONTEXT = NAMESPACE["COLUMNS"], NAMESPACE["CONTEXT"]


@pytest.fixture(scope="module")
def weights():
    return build_embedding_weights(COLUMNS)


@pytest.fixture(scope="module")
def records():
    rng = np.random.default_rng(7)
    return [good_record(rng, f"ex{i:03d}") for i in range(40)]


def lengths_of(records):
    spec = decode.record_spec(COLUMNS, CONTEXT, "id")
    decoder = decode.Decoder(spec)
    lengths, problems = validate.check_batch(records, decoder.decode(records), spec)
    assert not problems
    return lengths.tolist()


def batches_of(records, lengths, payloads, sizes):
    """(key, members) batches of consecutive records, `sizes` records each."""
    out, at = [], 0
    for k, size in enumerate(sizes):
        members = [((0, i), lengths[i], payloads[i]) for i in range(at, at + size)]
        out.append(((0, 0, 0, k), members))
        at += size
    return out


def writer(directory, weights, compression="none", files=(), n=1, static=False):
    features = shards.ShardFeatures(
        record_spec=decode.record_spec(COLUMNS, CONTEXT, "id"),
        columns=COLUMNS,
        context=CONTEXT,
        id_feature="id",
        embedding_weights=weights,
        files=files,
        length_in_key=static,
    )
    do_fn = shards._WriteShardDoFn(str(directory), n, compression, features)
    do_fn.setup()
    return do_fn


def grouped(item):
    """`(shard, [batch | None])` as the shard step gets it: each batch a list
    of pieces (here one), None the empty shard's seed."""
    index, batches = item
    return index, [None if b is None else [b] for b in batches]


def main_outputs(do_fn, item):
    """The shard's info and the examples of each batch written (after the
    WRITTEN 0 that starts the progress clock)."""
    outs = list(do_fn.process(grouped(item)))
    written = [o.value for o in outs if hasattr(o, "tag")]
    (info,) = [o for o in outs if not hasattr(o, "tag")]
    assert written[0] == 0
    return info, written[1:]


def expected_shard(records, lengths, sizes, weights, t=None):
    """What main wrote: each batch's `batch_record`, framed, in key order."""
    computer = FeatureComputer(COLUMNS, CONTEXT, weights, "id")
    out, at = b"", 0
    for size in sizes:
        members = [((0, i), lengths[i], records[i]) for i in range(at, at + size)]
        record, _ = computer.batch_record(members, t)
        out += frame(record)
        at += size
    return out


def test_groups_keep_order_and_bound_records():
    batches = [(k, [None] * n) for k, n in enumerate([3, 3, 5, 1, 9, 2])]
    got = shards.groups(batches, limit=6)
    assert [[k for k, _ in g] for g in got] == [[0, 1], [2, 3], [4], [5]]
    assert [b for g in got for b in g] == batches


def test_shard_bytes_equal_the_batch_records_of_main(tmp_path, records, weights):
    (tmp_path / "shards").mkdir()
    lengths = lengths_of(records)
    sizes = [16, 16, 8]
    batches = batches_of(records, lengths, records, sizes)
    do_fn = writer(tmp_path, weights)
    shuffled = [batches[2], None, batches[0], batches[1]]  # any order, None: seed
    info, written = main_outputs(do_fn, (0, shuffled))
    path = tmp_path / output.shard_file(0, 1)
    assert path.read_bytes() == expected_shard(records, lengths, sizes, weights)
    index, entry, totals, shapes, checksum = info
    assert (index, entry["batches"], entry["examples"]) == (0, 3, 40)
    assert totals[:3] == (3, 40, sum(lengths))
    assert sum(n for _, n in shapes) == 3 and written == sizes
    data = path.read_bytes()  # the checksum computed as it was written
    assert checksum == (len(data), f"{google_crc32c.value(data):08x}")
    # A retried attempt rewrites the same bytes under the same name.
    (path.parent / ".part-00000-of-00001.tfrecord.tmp-dead").write_bytes(b"partial")
    assert main_outputs(do_fn, (0, shuffled))[0] == info
    assert path.read_bytes() == expected_shard(records, lengths, sizes, weights)
    do_fn.teardown()


def test_records_by_extent_give_the_same_shard(tmp_path, records, weights):
    (tmp_path / "shards").mkdir()
    data = tmp_path / "in.tfrecord"
    data.write_bytes(b"".join(frame(r) for r in records))
    (chunk,) = list(tfrecord.read_file_located(str(data), 0, chunk_size=100))
    offsets = chunk[2]
    lengths = lengths_of(records)
    extents = [(o, len(r)) for o, r in zip(offsets, records, strict=True)]
    sizes = [16, 16, 8]
    do_fn = writer(tmp_path, weights, files=[str(data)])
    main_outputs(do_fn, (0, batches_of(records, lengths, extents, sizes)))
    got = (tmp_path / output.shard_file(0, 1)).read_bytes()
    assert got == expected_shard(records, lengths, sizes, weights)
    do_fn.teardown()


def test_static_t_and_empty_shards(tmp_path, records, weights):
    (tmp_path / "shards").mkdir()
    lengths = lengths_of(records)
    t = max(lengths[:16]) + 3
    batch = ((0, 0, 15, t), [((0, i), lengths[i], records[i]) for i in range(16)])
    do_fn = writer(tmp_path, weights, n=2, static=True)
    info, _ = main_outputs(do_fn, (1, [batch]))
    assert info[3] == [((16, t), 1)]
    got = (tmp_path / output.shard_file(1, 2)).read_bytes()
    assert got == expected_shard(records, lengths, [16], weights, t)
    info, written = main_outputs(do_fn, (0, [None]))
    assert info[1]["batches"] == 0 and written == []
    assert os.path.getsize(tmp_path / output.shard_file(0, 2)) == 0
    do_fn.teardown()


def test_gzip_shards_hold_one_member_per_batch(tmp_path, records, weights):
    (tmp_path / "shards").mkdir()
    lengths = lengths_of(records)
    sizes = [16, 24]
    do_fn = writer(tmp_path, weights, compression="gzip")
    info, _ = main_outputs(do_fn, (0, batches_of(records, lengths, records, sizes)))
    got = (tmp_path / output.shard_file(0, 1)).read_bytes()
    assert info[4] == (len(got), f"{google_crc32c.value(got):08x}")
    computer = FeatureComputer(COLUMNS, CONTEXT, weights, "id")
    want = b""
    for k, size in enumerate(sizes):  # what main's gzip pieces held, joined
        at = sum(sizes[:k])
        members = [((0, i), lengths[i], records[i]) for i in range(at, at + size)]
        piece = tmp_path / f"piece-{k}"
        output.write_records(str(piece), [computer.batch_record(members)[0]], "gzip")
        want += piece.read_bytes()
    assert got == want
    do_fn.teardown()


def test_a_failed_attempt_leaves_no_partial_shard(tmp_path, records, weights):
    (tmp_path / "shards").mkdir()
    lengths = lengths_of(records)
    batches = batches_of(records, lengths, records, [16, 16, 8])
    do_fn = writer(tmp_path, weights)
    outputs = do_fn.process(grouped((0, batches)))
    next(outputs)  # the shard started (WRITTEN 0, for the progress clock)
    next(outputs)  # the first batch written (its WRITTEN count)...
    with pytest.raises(RuntimeError, match="worker lost"):
        outputs.throw(RuntimeError("worker lost"))  # ...then the attempt fails
    assert os.listdir(tmp_path / "shards") == []  # no temporary, no shard
    do_fn.teardown()
