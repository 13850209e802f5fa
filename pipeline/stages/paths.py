"""Where the job may write: the output-directory guard and file names from the spec.

Place in the flow: config -> **paths** (checked before any work) -> staging ->
write. Two promises live here:

- `check_output_location`: the job never replaces a directory it did not write.
  `--overwrite` replaces DIR only when DIR is empty or holds nothing but a
  seqshards output (our `metadata.json`, `shards/`, `errors/`, `embeddings/`,
  `assets/`, or the debris an interrupted run of ours leaves); and, whatever the
  flags, DIR may not hold (or be, or lead through a symlink to) a file the job
  reads: input files, the columns file, vocabulary and checkpoint files.
- `safe_file_name`: a name from the spec (a column name, a feature key, a
  vocabulary's base name) becomes one file name inside DIR, never a path: `/`,
  `..`, spaces, control and non-ASCII characters are percent-encoded (UTF-8), so
  `user/watches_embedding` is stored as `user%2Fwatches_embedding.npy`. The
  mapping is reversible (`urllib.parse.unquote`) and metadata.json records it
  anyway (`embeddings: {column: file}`, `assets`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Sequence

from pipeline.stages import fileio

# The output layout (DIR/...): one place for these names.
SHARDS_DIR = "shards"
ERRORS_DIR = "errors"
EMBEDDINGS_DIR = "embeddings"
ASSETS_DIR = "assets"  # --analyze results
DROPPED_DIR = "dropped"  # --static_shapes --drop_remainder
DROPPED_FILE = f"{DROPPED_DIR}/remainder.jsonl"
# Piece files of the Beam engine (batch records), copied into shards, then removed.
PIECES_DIR = "_pieces"
METADATA_FILE = "metadata.json"
# Files are written as `.<name>.tmp-<hex>` and renamed to `<name>`.
TMP_MARK = ".tmp-"

# Entries a run of ours leaves directly under DIR, and what each may hold.
_OURS = {
    SHARDS_DIR: re.compile(r"part-\d{5}-of-\d{5}\.tfrecord(\.gz)?"),
    ERRORS_DIR: re.compile(r"[a-z_]+\.jsonl"),
    EMBEDDINGS_DIR: re.compile(r"[A-Za-z0-9._%~-]+\.npy"),
    ASSETS_DIR: re.compile(r"[A-Za-z0-9._%~-]+"),
    DROPPED_DIR: re.compile(r"remainder\.jsonl"),
    PIECES_DIR: None,  # anything: the Beam job's intermediate pieces
}
_TEMPORARY = re.compile(r"\..*" + re.escape(TMP_MARK) + r"[0-9a-f]+")
# Keys our metadata.json always has (pipeline.metadata.build_metadata).
_METADATA_KEYS = frozenset({"version", "engine", "columns", "counts", "shards"})
# Longest file name kept as is (most file systems allow 255 bytes; room for a
# suffix such as ".npy").
_MAX_NAME = 200


def safe_file_name(name: str) -> str:
    """Returns one file name (no directory part) that stands for `name`.

    Letters, digits, `_`, `-` and `.` stay; every other character (including
    `/`, `%`, spaces and non-ASCII) becomes `%XX` of its UTF-8 bytes, and a
    leading `.` becomes `%2E` (no hidden files, no `.` or `..`). Reversible
    with `urllib.parse.unquote`. Names longer than 200 characters once encoded
    are cut and end with a hash of the whole name (then metadata.json is the
    record of which file holds what).

    Raises:
      ValueError: `name` is empty.
    """
    if not name:
        raise ValueError(
            "Invalid file name. Expected a non-empty name from the columns spec. "
            f"Received: {name!r}"
        )
    safe = urllib.parse.quote(name, safe="_-.")
    if safe.startswith("."):
        safe = "%2E" + safe[1:]
    if len(safe) > _MAX_NAME:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
        safe = f"{safe[: _MAX_NAME - 17]}~{digest}"
    return safe


@dataclasses.dataclass(frozen=True)
class ReadFile:
    """A file the job reads, named for error messages (`what`: 'input file')."""

    path: str
    what: str


def column_files(columns: Iterable) -> list[ReadFile]:
    """Vocabulary and checkpoint files the columns read (nested columns too)."""
    out, seen = [], set()

    def visit(column):
        if id(column) in seen:
            return
        seen.add(id(column))
        vocabulary = getattr(column, "vocabulary_file", None)
        if isinstance(vocabulary, str) and vocabulary:
            out.append(
                ReadFile(vocabulary, f"vocabulary file of column {column.name!r}")
            )
        checkpoint = getattr(column, "ckpt_to_load_from", None)
        if isinstance(checkpoint, str) and checkpoint:
            out.append(ReadFile(checkpoint, f"checkpoint of column {column.name!r}"))
        if dataclasses.is_dataclass(column):
            for field in dataclasses.fields(column):
                value = getattr(column, field.name)
                for item in value if isinstance(value, (tuple, list)) else (value,):
                    if dataclasses.is_dataclass(item) and hasattr(item, "name"):
                        visit(item)

    for column in columns:
        visit(column)
    return out


def check_output_location(
    output_dir: str, *, overwrite: bool, reads: Sequence[ReadFile] = ()
) -> None:
    """Refuses, before any work, an output directory the job must not replace.

    Args:
      output_dir: DIR (`--output`), local or `scheme://...`.
      overwrite: `--overwrite`: replace DIR if it is a seqshards output.
      reads: Files the job reads; DIR may not contain, be or lead to any.

    Raises:
      ValueError: DIR is, contains or (through a symlink) leads to a file the
        job reads.
      FileExistsError: DIR is a file; or is not empty and `overwrite` is false;
        or holds something a run of ours did not write (even with `overwrite`).
      NotADirectoryError: a parent of a local DIR is a file.
    """
    for read_file in reads:
        if _inside(read_file.path, output_dir):
            raise ValueError(
                "Invalid value for argument `output`. Expected a directory that "
                "holds none of the job's own inputs (the job replaces DIR). "
                f"Received: output={output_dir!r}, which is or holds the "
                f"{read_file.what}, {read_file.path!r}. Pick a new directory for --output, e.g. "
                f"{_suggestion(output_dir)!r}."
            )
    check_output_dir(output_dir, overwrite)


def check_output_dir(output_dir: str, overwrite: bool) -> None:
    """Refuses an output path the job may not replace (before work, and at commit).

    A new or empty directory is fine; a non-empty one only with `overwrite`,
    and only if everything in it is a seqshards output (`foreign_entries`).

    Raises:
      FileExistsError: if `output_dir` is a file; a non-empty directory and
        `overwrite` is false; or holds anything a run of ours does not write.
      NotADirectoryError: if a parent of a local `output_dir` is a file.
    """
    if not fileio.exists(output_dir):
        if "://" not in output_dir:
            parent = os.path.dirname(os.path.abspath(output_dir))
            while not os.path.exists(parent):
                parent = os.path.dirname(parent)
            if not os.path.isdir(parent):
                raise NotADirectoryError(
                    "Invalid value for argument `output`. Expected a path whose "
                    f"parents are directories. Received: output={output_dir!r} "
                    f"({parent!r} is a file; pick another --output)"
                )
        return
    if not fileio.isdir(output_dir):
        raise FileExistsError(
            "Invalid value for argument `output`. Expected a directory path. "
            f"Received: output={output_dir!r} (an existing file; remove it or pick "
            "another path)"
        )
    if not fileio.listdir(output_dir):
        return
    if not overwrite:
        raise FileExistsError(
            "Invalid value for argument `output`. Expected an empty or new directory. "
            f"Received: output={output_dir!r} (not empty; pass --overwrite to "
            "replace it: it replaces only a seqshards output)"
        )
    foreign = foreign_entries(output_dir)
    if foreign:
        shown = ", ".join(repr(e) for e in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise FileExistsError(
            "Invalid value for argument `output`. Expected a new or empty "
            "directory, or a seqshards output (--overwrite replaces only those). "
            f"Received: output={output_dir!r}, which holds {shown}{more}: not "
            "written by seqshards. Nothing was changed. Pick another --output, or "
            "move those files away yourself."
        )


def foreign_entries(directory: str) -> list[str]:
    """Paths under `directory` (relative, sorted) that a run of ours does not write.

    Ours: `metadata.json` of ours; `shards/`, `errors/`, `embeddings/`, `assets/`
    holding files named as the job names them (temporaries of a killed run
    included); the Beam job's piece directory. Anything else is foreign.
    """
    foreign = []
    for entry in sorted(_listdir(directory)):
        path = f"{directory.rstrip('/')}/{entry}"
        if entry == METADATA_FILE:
            if not _is_our_metadata(path):
                foreign.append(entry)
        elif entry not in _OURS or not fileio.isdir(path):
            foreign.append(entry + ("/" if fileio.isdir(path) else ""))
        elif _OURS[entry] is not None:
            pattern = _OURS[entry]
            for name in sorted(_listdir(path)):
                inner = f"{path}/{name}"
                ok = pattern.fullmatch(name) or _TEMPORARY.fullmatch(name)
                if not ok or fileio.isdir(inner) or _is_link(inner):
                    foreign.append(f"{entry}/{name}")
        if _is_link(path):
            foreign.append(entry)
    return sorted(set(foreign))


def _listdir(directory: str) -> list[str]:
    return fileio.listdir(directory)


def _is_link(path: str) -> bool:
    return "://" not in path and os.path.islink(path)


def _is_our_metadata(path: str) -> bool:
    try:
        with fileio.open_read(path) as f:
            doc = json.loads(f.read(1 << 24))
    except (ValueError, OSError):
        return False
    return isinstance(doc, dict) and _METADATA_KEYS <= doc.keys()


def _resolved(path: str) -> str:
    """A comparable form: local paths absolute with symlinks and `..` resolved;
    remote paths as given (`scheme://...`), without a trailing `/`."""
    if "://" in path:
        return path.rstrip("/")
    return os.path.realpath(os.path.expanduser(path))


def _inside(path: str, directory: str) -> bool:
    """Whether `path` is `directory` or lies under it (after resolving)."""
    p, d = _resolved(path), _resolved(directory)
    if _scheme(p) != _scheme(d):
        return False
    return p == d or p.startswith(d.rstrip("/") + "/")


def _scheme(path: str) -> str:
    return path.split("://", 1)[0] if "://" in path else ""


def _suggestion(output_dir: str) -> str:
    return output_dir.rstrip("/") + "-seqshards"
