"""stages/tradeoff.py: shapes against padding, static and dynamic, per K."""

from pipeline_data import lognormal_examples

from pipeline.stages import tradeoff


def test_tradeoff_rows_and_table():
    positions, lengths = lognormal_examples(5, n=3000)
    rows = tradeoff.tradeoff(positions, lengths, 64, ks=(2, 4, None))
    assert [r["k"] for r in rows] == [2, 4, None]
    for row in rows[:2]:
        assert row["static"]["shapes"] <= row["k"]
        assert row["static"]["short_batches"] <= 1
        assert len(row["dynamic"]["boundaries"]) + 1 <= row["k"]
    effs = [r["static"]["efficiency"] for r in rows]
    assert effs == sorted(effs)  # more shapes, less padding
    text = "\n".join(tradeoff.format_tradeoff(rows, 64))
    assert "auto" in text and "static eff" in text
    assert f"{rows[1]['static']['efficiency']:.4f}" in text
