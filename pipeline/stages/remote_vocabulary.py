"""Vocabulary files on object stores: columns that read them through `fileio`.

Place in the flow: spec (building `vocabulary_file` columns) -> features (the
layer builds each column's lookup table where it runs, in either engine).

`transforms` builds a vocabulary's lookup table with TensorFlow's
`tf.lookup.TextFileInitializer`, which reads through TensorFlow's file
systems: in TensorFlow 2.21 `gs://` only through its own GCS client (its
endpoint is compiled in: no emulator) and no `s3://` at all. A column whose
vocabulary file is remote is built as a `RemoteVocabularyFileColumn`: the same
column (name, key, size, ids, config) whose table is built from a local copy
of the file, fetched through `fileio` once per process where the layer runs
(each Beam worker, or the tf.data engine's process).
"""

from __future__ import annotations

import dataclasses

import transforms
from pipeline.stages import fileio
from transforms.categorical import VocabularyFileCategoricalColumn


@dataclasses.dataclass(frozen=True)
class RemoteVocabularyFileColumn(VocabularyFileCategoricalColumn):
    """A `vocabulary_file` column whose file is read through `fileio`.

    Its config is TF's `VocabularyFileCategoricalColumn`'s (same class name,
    same keys): read back, it is the plain column. It is deliberately not
    registered with `transforms.serialization`, which would then map TF's
    class name to it for every vocabulary-file column.
    """

    def make_lookup(self):
        local = fileio.local_copy(self.vocabulary_file)
        as_local = VocabularyFileCategoricalColumn(
            **{
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(VocabularyFileCategoricalColumn)
            }
        )
        return dataclasses.replace(as_local, vocabulary_file=local).make_lookup()


def vocabulary_file_column(
    key: str, path: str, vocabulary_size: int | None = None, **kwargs
) -> VocabularyFileCategoricalColumn:
    """`transforms.sequence_categorical_column_with_vocabulary_file` for a
    local, `gs://` or `s3://` file (remote: a `RemoteVocabularyFileColumn`,
    its size counted on a local copy when not given).

    Raises:
      FileNotFoundError: a remote `path` that does not exist.
    """
    build = transforms.sequence_categorical_column_with_vocabulary_file
    if not fileio.is_remote(path):
        return build(key, path, vocabulary_size=vocabulary_size, **kwargs)
    if vocabulary_size is None:
        counted = build(key, fileio.local_copy(path), **kwargs)
        vocabulary_size = counted.vocabulary_size
    column = build(key, path, vocabulary_size=vocabulary_size, **kwargs)
    return RemoteVocabularyFileColumn(
        **{f.name: getattr(column, f.name) for f in dataclasses.fields(column)}
    )
