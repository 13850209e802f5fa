"""`seqshards inspect DIR`: what a run wrote (counts, errors, buckets, layout)."""


def main(argv) -> int:
    raise NotImplementedError("`seqshards inspect` is being built (issue 5).")
