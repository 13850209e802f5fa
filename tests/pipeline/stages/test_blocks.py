"""blocks.Block: the valid records the Beam job's grouping steps move."""

import numpy as np

from pipeline.stages import blocks
from pipeline.stages.blocks import Block

MEMBERS = [((1, 5), 3, b"c"), ((0, 9), 7, b"b"), ((0, 2), 3, b"a"), ((1, 0), 1, b"d")]


def test_members_round_trip_with_and_without_bytes():
    assert Block.of(MEMBERS).members() == MEMBERS
    assert Block.of(MEMBERS, keep_bytes=False).members() == [
        (p, n, None) for p, n, _ in MEMBERS
    ]


def test_sorted_by_file_then_record():
    got = Block.of(MEMBERS).sorted().members()
    assert got == sorted(MEMBERS, key=lambda m: m[0])


def test_take_by_index_and_mask_and_concat():
    block = Block.of(MEMBERS)
    assert block.take(np.asarray([2, 0])).members() == [MEMBERS[2], MEMBERS[0]]
    mask = np.asarray([True, False, False, True])
    assert block.take(mask).members() == [MEMBERS[0], MEMBERS[3]]
    both = Block.concat([block.take(~mask), block.take(mask)])
    assert both.members() == [MEMBERS[1], MEMBERS[2], MEMBERS[0], MEMBERS[3]]
    assert len(Block.concat([Block.of([]), block])) == 4


def test_histogram_counts_lengths():
    assert blocks.histogram(Block.of(MEMBERS)) == [(1, 1), (3, 2), (7, 1)]


def test_by_key_groups_indices_in_order():
    got = [(k, i.tolist()) for k, i in blocks.by_key([3, 1, 3, 0, 1])]
    assert got == [(0, [3]), (1, [1, 4]), (3, [0, 2])]
    assert blocks.by_key([]) == []
