"""The commit protocol: the file list in metadata.json, its check, the commit.

Place in the flow: output -> metadata -> **publish** (DIR appears), called by
`output.Staging.commit` for either engine; and under the reader and `inspect`
(a DIR is read only if it checks out).

One rule on every store: **metadata.json is the commit record.** It is written
last and lists, under `files`, every shard, dead-letter, embedding and asset
file with its size and CRC32C; a DIR is a complete run exactly when its
metadata.json exists and every file it lists is there with that size (readers
check, from one listing) and checksum (`inspect` checks). Anything else in DIR
is debris, ignored by readers and deleted by the next commit.

How DIR gets there:
- the engines write every file once, into a staging location next to DIR
  (`DIR.staging-<hex>/`, run-specific), metadata.json last; DIR is untouched
  while the job runs, so a previous run stays readable and a failed run leaves
  it as it was;
- local disks (`output.Staging.commit`): the staging directory is renamed onto
  DIR, swapped atomically with an existing DIR on Linux (renameat2
  RENAME_EXCHANGE): readers see the old run or the new one, whole;
- object stores (`commit_remote`), which cannot rename a prefix: (1) delete
  DIR/metadata.json, so that from here DIR reads as incomplete, never as a mix;
  (2) copy every listed file from staging to DIR server-side (no bytes through
  this process); (3) delete every other object under DIR (the previous run's
  leftovers, debris of killed runs); (4) write DIR/metadata.json, one object
  write: the commit point; (5) delete the staging prefix. Killed between (1)
  and (4), DIR has no metadata.json and is refused as incomplete; a rerun with
  `--overwrite` replaces it. Between (1) and (4) (the copies: requests, no
  data through the client) a reader is refused rather than served old bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from pipeline.stages import fileio
from pipeline.stages.paths import METADATA_FILE

# metadata.json key: {relative path: {"size": bytes, "crc32c": hex}}.
FILES_KEY = "files"


class IncompleteOutputError(ValueError):
    """DIR's metadata.json lists a file that is missing or differs."""


def listed_files(metadata: Mapping) -> list[str]:
    """Relative paths of every file a run wrote besides metadata.json."""
    rels = [s["file"] for s in metadata.get("shards", [])]
    rels += list(metadata.get("errors_files", []))
    rels += list(metadata.get("embeddings", {}).values())
    rels += list(metadata.get("assets", []))
    rels += list((metadata.get("static_shapes") or {}).get("dropped_files", []))
    return sorted(set(rels))


def manifest(directory: str, rels: Iterable[str]) -> dict[str, dict]:
    """`{rel: {"size", "crc32c"}}` of files under `directory` (one listing;
    the CRC32C from the store where it keeps one, else read).

    Raises:
      FileNotFoundError: a file of `rels` is not there.
    """
    directory = directory.rstrip("/")
    found = fileio.list_files(directory)
    out = {}
    for rel in rels:
        entry = found.get(rel)
        if entry is None:
            raise FileNotFoundError(
                f"The run wrote no {rel!r} under {directory!r}, yet counts it: a "
                "worker's output was lost. Rerun the job."
            )
        crc = fileio.checksum(f"{directory}/{rel}", entry)
        out[rel] = {"size": entry.size, "crc32c": crc}
    return out


def with_manifest(directory: str, metadata: Mapping) -> dict:
    """`metadata` with `files`: the manifest of every file it names."""
    return {**metadata, FILES_KEY: manifest(directory, listed_files(metadata))}


def verify(directory: str, metadata: Mapping, *, checksums: bool = False) -> None:
    """Checks that DIR holds every file metadata.json lists, with its size
    (one listing) and, with `checksums`, its CRC32C (reads them, except on GCS
    which keeps each object's CRC32C). Outputs written before `files` existed
    are not checked.

    Raises:
      IncompleteOutputError: a listed file is missing or differs.
    """
    files = metadata.get(FILES_KEY)
    if files is None:
        return
    directory = directory.rstrip("/")
    found = fileio.list_files(directory)
    for rel, want in sorted(files.items()):
        have = found.get(rel)
        problem = None
        if have is None:
            problem = "is missing"
        elif have.size != want["size"]:
            problem = f"has {have.size} bytes"
        elif checksums:
            crc = fileio.checksum(f"{directory}/{rel}", have)
            if crc != want["crc32c"]:
                problem = f"has CRC32C {crc}"
        if problem:
            raise IncompleteOutputError(
                f"Invalid seqshards output {directory!r}. Expected every file "
                f"{METADATA_FILE} lists. Received: {rel!r} {problem} (listed: "
                f"{want['size']} bytes, CRC32C {want['crc32c']}). The run that "
                "wrote it was interrupted, or its files were changed since: rerun "
                "the job with --overwrite."
            )


def put_metadata(output_dir: str, data: bytes) -> None:
    """Writes DIR/metadata.json: the commit point of `commit_remote`."""
    fileio.write_bytes(f"{output_dir}/{METADATA_FILE}", data)


def commit_remote(staging: str, output_dir: str) -> None:
    """Publishes a staged run on an object store (steps in the module docstring).

    Args:
      staging: The staging prefix, holding the run and its metadata.json.
      output_dir: DIR.
    """
    staging, output_dir = staging.rstrip("/"), output_dir.rstrip("/")
    data = fileio.read_bytes(f"{staging}/{METADATA_FILE}")
    rels = set(json.loads(data).get(FILES_KEY, {}))
    fileio.remove(f"{output_dir}/{METADATA_FILE}")  # (1) DIR: incomplete from here
    for rel in sorted(rels):  # (2)
        fileio.copy(f"{staging}/{rel}", f"{output_dir}/{rel}")
    stale = [rel for rel in fileio.list_files(output_dir) if rel not in rels]
    fileio.remove_under(output_dir, sorted(stale))  # (3)
    put_metadata(output_dir, data)  # (4) the commit point
    fileio.rmtree(staging)  # (5)
