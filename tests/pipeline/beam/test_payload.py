"""Which runner runs the job in-process, and what its grouping steps carry
(`runner.make_runner`, `runner.in_process`, `JobConfig.shuffle_payload_for`)."""

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
from apache_beam.runners.portability.fn_api_runner import fn_runner

from pipeline.beam import runner
from pipeline.stages import config

MULTI_PROCESS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
DEFAULT = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


@pytest.fixture
def local_files(tmp_path):
    files = []
    for i in range(2):
        path = tmp_path / f"part-{i}.tfrecord"
        path.write_bytes(b"x" * 1000)
        files.append(str(path))
    return files


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], BundleBasedDirectRunner),
        (["--runner=DirectRunner"], BundleBasedDirectRunner),
        (DEFAULT, BundleBasedDirectRunner),
        (["--runner=BundleBasedDirectRunner"], BundleBasedDirectRunner),
        (MULTI_PROCESS, fn_runner.FnApiRunner),
        (["--direct_running_mode=multi_threading"], fn_runner.FnApiRunner),
        (["--runner=FnApiRunner"], fn_runner.FnApiRunner),
    ],
)
def test_one_process_runs_on_the_bundle_based_runner(argv, expected, local_files):
    options = PipelineOptions(argv)
    made = runner.make_runner(options, local_files)
    assert type(made) is expected
    assert runner.in_process(options, local_files) == (
        expected is BundleBasedDirectRunner
    )
    assert runner.groups_objects(made) == (expected is BundleBasedDirectRunner)


def test_inputs_beyond_the_memory_share_run_on_the_fn_api_runner(
    local_files, monkeypatch
):
    share = runner.IN_PROCESS_BYTES_SHARE
    options = PipelineOptions(DEFAULT)
    monkeypatch.setattr(runner, "physical_memory", lambda: int(2000 / share))
    assert type(runner.make_runner(options, local_files)) is BundleBasedDirectRunner
    monkeypatch.setattr(runner, "physical_memory", lambda: int(1999 / share))
    assert type(runner.make_runner(options, local_files)) is fn_runner.FnApiRunner
    named = PipelineOptions(["--runner=BundleBasedDirectRunner"])  # named: any size
    assert type(runner.make_runner(named, local_files)) is BundleBasedDirectRunner


def test_other_runners_are_passed_by_name(local_files):
    options = PipelineOptions(["--runner=FlinkRunner"])
    assert runner.make_runner(options, local_files) == "FlinkRunner"
    assert not runner.in_process(options, local_files)


def test_physical_memory_is_this_machines():
    assert runner.physical_memory() > 2**28  # more than 256 MiB


def payload(files, flag="auto", in_process=True):
    job = config.JobConfig(
        input_pattern="x", output_dir="y", columns_file="c.yaml", shuffle_payload=flag
    )
    return job.shuffle_payload_for(files, in_process=in_process)


def test_auto_shuffles_bytes_in_process(local_files):
    assert payload(local_files) == "bytes"


def test_auto_references_local_files_on_runners_that_copy(local_files):
    assert payload(local_files, in_process=False) == "reference"


def test_auto_shuffles_bytes_from_object_stores():
    remote = ["gs://bucket/part-0.tfrecord", "/local/part-1.tfrecord"]
    assert payload(remote, in_process=False) == "bytes"


@pytest.mark.parametrize("flag", ["bytes", "reference"])
@pytest.mark.parametrize("in_process", [True, False])
def test_the_flag_wins(local_files, flag, in_process):
    assert payload(local_files, flag, in_process) == flag
