"""`seqshards stats`: length distribution, feature presence and bucket choices."""


def main(argv) -> int:
    raise NotImplementedError("`seqshards stats` is being built (issue 5).")
