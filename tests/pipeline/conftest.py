"""Fixtures of the pipeline tests (the data builders are in pipeline_data.py,
the object-store servers in object_stores.py)."""

import object_stores
import pytest
from pipeline_data import COLUMNS_PY, COLUMNS_YAML, write_dataset

from pipeline.stages import fileio


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


@pytest.fixture(scope="module", params=["gs", "s3"])
def object_store(request, tmp_path_factory):
    """An object store on loopback (fake-gcs-server, moto's S3 server) with an
    empty bucket, this process's clients pointed at it: `(scheme,
    "<scheme>://bkt", server)`."""
    log = str(tmp_path_factory.mktemp("logs") / f"{request.param}.log")
    start = object_stores.start_gcs if request.param == "gs" else object_stores.start_s3
    server = start(log)
    old = object_stores.use(server)
    try:
        base = f"{request.param}://bkt"
        fileio.create_bucket(base)
        yield request.param, base, server
    finally:
        object_stores.restore(old)
        server.stop()
