"""Static mode's batch ranks come before its batches are grouped: the keys the
ranking step and the counts name are exactly the batches formed."""

import collections

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that
from batch_ranks import ranked_keys

from pipeline.beam import runner
from pipeline.beam import static_shapes as static_batches
from pipeline.stages import static_shapes
from pipeline.stages.blocks import Block


@pytest.mark.parametrize("drop", [False, True])
def test_ranks_name_every_static_batch(drop):
    rng = np.random.default_rng(3)
    members = [
        ((f, i), int(rng.integers(1, 40)), b"%d-%d" % (f, i))
        for f in range(3)
        for i in range(90)
    ]
    histogram = collections.Counter(m[1] for m in members)
    plan = static_shapes.make_plan(
        dict(histogram), "auto", 8, max_buckets=4, static_shapes=True,
        drop_remainder=drop,
    )  # fmt: skip

    def counts(got):
        (keys,) = got
        remainder = sum(k[0] == 1 for k in keys)
        assert len(keys) > 0
        assert (remainder == 0) == drop, keys

    options = beam.options.pipeline_options.PipelineOptions()
    with test_pipeline.TestPipeline(runner=runner.make_runner(options)) as p:
        plan_pc = p | "Plan" >> beam.Create([plan])
        valid = p | "Blocks" >> beam.Create(
            [Block.of(members[i : i + 11]) for i in range(0, len(members), 11)]
        )
        out = valid | "Form" >> static_batches.FormStaticBatches(
            plan_pc, drop_remainder=drop
        )
        assert_that(ranked_keys(p, out["batches"], out["ranks"]), counts)
