"""Fixtures of the pipeline tests (the data builders are in pipeline_data.py)."""

import pytest
from pipeline_data import COLUMNS_PY, COLUMNS_YAML, write_dataset


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    directory = tmp_path_factory.mktemp("input")
    facts = write_dataset(directory)
    columns = directory / "columns.yaml"
    columns.write_text(COLUMNS_YAML)
    facts["columns"] = str(columns)
    (directory / "columns.py").write_text(COLUMNS_PY)
    facts["columns_py"] = str(directory / "columns.py")
    facts["pattern"] = str(directory / "in-*.tfrecord")
    return facts
