"""Checks that ranks computed ahead (`bucket.BatchRanks`, static mode's
`FormStaticBatches` "ranks") name exactly the batches formed, in key order."""

import apache_beam as beam


def ranked_keys(p, formed, ranks):
    """A one-element PCollection: the formed batches' keys, sorted, once the
    check passed (`formed`: (batch_key, members); `ranks`: a singleton
    `{batch_key: rank}`)."""

    def check(_, keys, ranks):
        assert sorted(keys) == sorted(ranks, key=ranks.get)
        assert sorted(ranks.values()) == list(range(len(keys)))
        return sorted(keys)

    keys = formed | "Keys" >> beam.Map(lambda batch: batch[0])
    return (
        p
        | "Seed" >> beam.Create([None])
        | "Check"
        >> beam.Map(
            check,
            keys=beam.pvalue.AsList(keys),
            ranks=beam.pvalue.AsSingleton(ranks),
        )
    )
