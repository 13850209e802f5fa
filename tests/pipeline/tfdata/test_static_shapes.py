"""tfdata/static_shapes.py: the remainder batches, as views of the open batches."""

import numpy as np

from pipeline.tfdata import static_shapes


def test_remainder_batches_join_and_slice_contents_as_views():
    d = 2
    rows = np.arange(2 * 7 * d, dtype=np.float32).reshape(-1, d)
    # Bucket 0: examples of lengths 1, 2 (one run); bucket 1: 3, then 1 (two runs).
    part0 = (
        [(rows[0:3], np.asarray([1, 2]))],
        np.asarray([1, 2]),
        {"label": (np.asarray([10, 11]), np.asarray([1, 1]))},
        np.asarray([b"a", b"b"], object),
    )
    part1 = (
        [(rows[3:6], np.asarray([3])), (rows[6:7], np.asarray([1]))],
        np.asarray([3, 1]),
        {"label": (np.asarray([12, 13]), np.asarray([1, 1]))},
        np.asarray([b"c", b"d"], object),
    )
    batches = static_shapes.remainder_batches([part0, part1], 3)
    assert [b[1].tolist() for b in batches] == [[1, 2, 3], [1]]
    first, second = batches
    assert np.concatenate([r for r, _ in first[0]]).tolist() == rows[:6].tolist()
    assert first[2]["label"][0].tolist() == [10, 11, 12]
    assert first[3].tolist() == [b"a", b"b", b"c"]
    assert [r.tolist() for r, _ in second[0]] == [rows[6:7].tolist()]
    assert second[2]["label"][0].tolist() == [13] and second[3].tolist() == [b"d"]
    assert np.shares_memory(first[0][0][0], rows)
