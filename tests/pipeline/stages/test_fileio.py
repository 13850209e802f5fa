"""The file layer: one API on local disks, gs:// and s3:// (the stores on
loopback, through the clients users' paths go through)."""

import os

import pytest

from pipeline.stages import fileio


@pytest.mark.parametrize("path", ["hdfs://nn/data", "ram://x/y", "HDFS://nn/z"])
def test_other_schemes_are_refused_naming_the_supported_ones(path):
    with pytest.raises(ValueError, match=r"`input`.*gs://BUCKET.*s3://BUCKET"):
        fileio.check_supported(path, "input")


@pytest.mark.parametrize("path", ["/tmp/x", "rel/x", "gs://b/k", "s3://b/k"])
def test_local_gs_and_s3_paths_are_supported(path):
    fileio.check_supported(path, "input")  # no error
    assert fileio.is_remote(path) == ("://" in path)


def _exercise(root: str) -> None:
    """The same calls give the same answers wherever `root` is."""
    fileio.makedirs(f"{root}/d/sub")
    fileio.write_bytes(f"{root}/d/a.txt", b"alpha")
    fileio.write_bytes(f"{root}/d/b.bin", b"\x00" * 3)
    fileio.write_bytes(f"{root}/d/sub/c.txt", b"gamma!")
    assert fileio.read_bytes(f"{root}/d/a.txt") == b"alpha"
    assert fileio.size(f"{root}/d/sub/c.txt") == 6
    assert fileio.isfile(f"{root}/d/a.txt") and not fileio.isfile(f"{root}/d")
    assert fileio.isdir(f"{root}/d") and not fileio.isdir(f"{root}/d/a.txt")
    assert fileio.exists(f"{root}/d/sub") and not fileio.exists(f"{root}/nope")
    assert fileio.info(f"{root}/nope") is None
    assert fileio.listdir(f"{root}/d") == ["a.txt", "b.bin", "sub"]
    assert fileio.glob(f"{root}/d/*.txt") == [f"{root}/d/a.txt"]
    assert fileio.glob(f"{root}/d/*/c.t?t") == [f"{root}/d/sub/c.txt"]
    assert {k: v.size for k, v in fileio.list_files(f"{root}/d").items()} == {
        "a.txt": 5,
        "b.bin": 3,
        "sub/c.txt": 6,
    }
    # CRC32C of b"alpha": the store's own where it keeps one, else computed.
    assert fileio.checksum(f"{root}/d/a.txt") == fileio.crc32c_hex(b"alpha")
    fileio.makedirs(f"{root}/e")  # (remote: nothing to do, prefixes are implicit)
    fileio.copy(f"{root}/d/a.txt", f"{root}/e/a.txt")
    assert fileio.read_bytes(f"{root}/e/a.txt") == b"alpha"
    with pytest.raises(RuntimeError), fileio.open_write(f"{root}/d/x.txt") as f:
        f.write(b"half")
        raise RuntimeError("a failed write")
    # An object appears whole or not at all (local files: written under a
    # temporary name by the engines, `output.temporary_path`).
    assert fileio.exists(f"{root}/d/x.txt") == (not fileio.is_remote(root))
    fileio.remove_under(f"{root}/d", ["b.bin", "x.txt"])
    assert sorted(fileio.list_files(f"{root}/d")) == ["a.txt", "sub/c.txt"]
    fileio.rmtree(f"{root}/d")
    fileio.rmtree(f"{root}/d")  # an absent directory is fine
    assert not fileio.exists(f"{root}/d")
    with pytest.raises(FileNotFoundError, match="nope"):
        fileio.open_read(f"{root}/nope")


def test_local_files(tmp_path):
    _exercise(str(tmp_path))


@pytest.mark.slow
def test_object_store_files(object_store):
    scheme, base, _ = object_store
    fileio.STATS.reset()
    _exercise(f"{base}/fileio")
    stats = fileio.STATS.snapshot()
    assert stats["total_requests"] > 0
    assert all(k.startswith(f"{scheme} ") for k in stats["requests"])
    assert fileio.stats_line().startswith(f"object store: {stats['total_requests']}")


@pytest.mark.slow
def test_remote_reads_fetch_each_cached_block_once(object_store):
    _, base, _ = object_store
    block = fileio.READ_AHEAD
    data = os.urandom(3 * block + 100)
    path = f"{base}/reader/blob"
    fileio.write_bytes(path, data)
    fileio.STATS.reset()
    with fileio.open_read(path) as f:
        # Jumps around the first two blocks, then reads across the last two.
        for offset, n in [(10, 5), (block + 7, 20), (3, 9), (block - 4, 8)]:
            f.seek(offset)
            assert f.read(n) == data[offset : offset + n]
        f.seek(2 * block - 1)
        assert f.read() == data[2 * block - 1 :]
        f.seek(-3, os.SEEK_END)
        assert f.read(10) == data[-3:]
    stats = fileio.STATS.snapshot()
    assert stats["bytes_read"] == len(data)  # every block fetched once
    assert fileio.size(path) == len(data)
