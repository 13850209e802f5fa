"""The commit protocol: metadata.json lists every file (size, CRC32C), readers
verify it, and the object-store commit replaces DIR without a mixed state."""

import json

import pytest

from pipeline.stages import fileio, publish

METADATA = {
    "shards": [{"file": "shards/part-00000-of-00001.tfrecord"}],
    "errors_files": ["errors/bad_dtype.jsonl"],
    "embeddings": {"watches_embedding": "embeddings/watches_embedding.npy"},
}
FILES = {
    "shards/part-00000-of-00001.tfrecord": b"shard bytes",
    "errors/bad_dtype.jsonl": b'{"reason": "bad_dtype"}\n',
    "embeddings/watches_embedding.npy": b"npy",
}


def _write_run(directory: str) -> dict:
    """Writes FILES and metadata.json (with its manifest) under `directory`."""
    for rel, data in FILES.items():
        fileio.makedirs(f"{directory}/{rel.rpartition('/')[0]}")
        fileio.write_bytes(f"{directory}/{rel}", data)
    metadata = publish.with_manifest(directory, METADATA)
    fileio.write_bytes(f"{directory}/metadata.json", json.dumps(metadata).encode())
    return metadata


def test_manifest_lists_every_file_with_size_and_crc32c(tmp_path):
    metadata = _write_run(str(tmp_path))
    assert metadata[publish.FILES_KEY] == {
        rel: {"size": len(data), "crc32c": fileio.crc32c_hex(data)}
        for rel, data in FILES.items()
    }
    publish.verify(str(tmp_path), metadata, checksums=True)  # no error


def test_a_missing_file_is_refused_before_the_manifest_is_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="wrote no .* yet counts it"):
        publish.with_manifest(str(tmp_path), METADATA)


@pytest.mark.parametrize(
    "change, checksums, problem",
    [
        (lambda p: p.unlink(), False, "is missing"),
        (lambda p: p.write_bytes(b"shard"), False, "has 5 bytes"),
        (lambda p: p.write_bytes(b"SHARD BYTES"), True, "has CRC32C"),
    ],
)
def test_verify_refuses_a_changed_directory(tmp_path, change, checksums, problem):
    metadata = _write_run(str(tmp_path))
    change(tmp_path / "shards" / "part-00000-of-00001.tfrecord")
    with pytest.raises(publish.IncompleteOutputError, match=problem):
        publish.verify(str(tmp_path), metadata, checksums=checksums)


def test_same_size_change_passes_the_size_check_only(tmp_path):
    metadata = _write_run(str(tmp_path))
    (tmp_path / "shards" / "part-00000-of-00001.tfrecord").write_bytes(b"SHARD BYTES")
    publish.verify(str(tmp_path), metadata)  # sizes only: one listing


@pytest.mark.slow
def test_remote_commit_replaces_dir_and_cleans_up(object_store):
    _, base, _ = object_store
    output = f"{base}/publish/out"
    fileio.write_bytes(f"{output}/shards/part-00000-of-00009.tfrecord", b"old")
    fileio.write_bytes(f"{output}/metadata.json", b"{}")
    staging = f"{output}.staging-0123"
    metadata = _write_run(staging)
    publish.commit_remote(staging, output)
    assert sorted(fileio.list_files(output)) == sorted([*FILES, "metadata.json"])
    assert json.loads(fileio.read_bytes(f"{output}/metadata.json")) == metadata
    publish.verify(output, metadata, checksums=True)
    assert fileio.list_files(staging) == {}
