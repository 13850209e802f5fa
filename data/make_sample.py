"""Generates the sample data: data/sample-0000{0,1}-of-00002.tfrecord.

Deterministic (numpy seed 1234; same bytes every run). 2400 SequenceExamples
(1200 per file) of movie-watching histories: lengths lognormal(median 12,
sigma 0.8) clipped to 1..200; per step `rating` (float, 0.5..5.0), `watches`
(int64 movie id, Zipf-like over 1000), `genre` (bytes, 8 words; each user
prefers one genre). Context: `id` (b"user-000000"...) and `label` (int64):
1 when the mean rating of the history is > 3.0. Users have a taste level that
shifts their ratings, so the label is learnable from the sequence.

Usage: python data/make_sample.py [--out data] [--num 3000]
"""

import argparse
import os

import numpy as np
import tensorflow as tf

GENRES = [
    b"action",
    b"comedy",
    b"drama",
    b"horror",
    b"romance",
    b"scifi",
    b"thriller",
    b"western",
]


def make_example(rng: np.random.Generator, user: int) -> bytes:
    length = int(np.clip(np.round(rng.lognormal(np.log(12), 0.8)), 1, 200))
    taste = rng.normal(0.0, 0.9)
    favourite = int(rng.integers(len(GENRES)))
    ranks = np.minimum(rng.zipf(1.3, length), 1000)
    watches = ((ranks * 7919 + favourite * 131) % 1000).astype(np.int64)
    genres = np.where(
        rng.random(length) < 0.6, favourite, rng.integers(len(GENRES), size=length)
    )
    ratings = np.clip(
        np.round((3.0 + taste + rng.normal(0, 0.8, length)) * 2) / 2, 0.5, 5.0
    )
    ex = tf.train.SequenceExample()
    ex.context.feature["id"].bytes_list.value.append(b"user-%06d" % user)
    ex.context.feature["label"].int64_list.value.append(int(ratings.mean() > 3.0))
    lists = ex.feature_lists.feature_list
    for r, w, g in zip(
        ratings.tolist(), watches.tolist(), genres.tolist(), strict=True
    ):
        lists["rating"].feature.add().float_list.value.append(r)
        lists["watches"].feature.add().int64_list.value.append(w)
        lists["genre"].feature.add().bytes_list.value.append(GENRES[g])
    return ex.SerializeToString(deterministic=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--num", type=int, default=2400)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1234)
    per_shard = -(-args.num // args.shards)
    user = 0
    for s in range(args.shards):
        path = os.path.join(args.out, f"sample-{s:05d}-of-{args.shards:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(min(per_shard, args.num - user)):
                writer.write(make_example(rng, user))
                user += 1
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
