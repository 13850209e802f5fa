"""The Flink / Spark defaults (pipeline/beam/engines.py): added only when
absent, a cluster master kept as is; the PROCESS worker's entry point.

(The engines themselves run in test_flink_spark.py.)
"""

import json
import os
import sys

import pytest

from pipeline.beam import engines as ed


@pytest.fixture
def runners(tmp_path):
    for name in ed.JOB_SERVER_JARS.values():
        (tmp_path / name).write_bytes(b"jar")
    return tmp_path


def flags(argv: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)


@pytest.mark.parametrize("argv", [[], ["--runner", "DirectRunner"], ["--runner=PortableRunner"]])  # fmt: skip
def test_other_runners_are_left_alone(argv, runners):
    assert ed.with_engine_defaults(argv, runners_dir=runners) == argv


def test_flink_alone_runs_locally_on_process_workers_of_this_interpreter(runners):
    got = flags(
        ed.with_engine_defaults(["--runner", "FlinkRunner"], runners_dir=runners)
    )
    assert got["flink_master"] == "[local]"
    assert got["flink_job_server_jar"] == str(runners / "flink-job-server.jar")
    assert (got["parallelism"], got["sdk_worker_parallelism"]) == ("2", "2")
    assert got["environment_type"] == "PROCESS"
    boot = json.loads(got["environment_config"])["command"]
    assert os.access(boot, os.X_OK)
    with open(boot) as f:
        assert f.readline().strip() == f"#!{sys.executable}"
    conf = open(os.path.join(got["flink_conf_dir"], "flink-conf.yaml")).read()
    assert f"attempts-before-reset-backoff: {ed.FLINK_RETRIES}" in conf


def test_the_local_job_server_gets_light_jvm_flags_unless_given(runners):
    out = ed.with_engine_defaults(["--runner", "FlinkRunner"], runners_dir=runners)
    jvm = [a.split("=", 1)[1] for a in out if a.startswith("--job_server_jvm_prop")]
    assert jvm == ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
    mine = ["--runner", "SparkRunner", "--job_server_jvm_properties=-Xmx2g"]
    out = ed.with_engine_defaults(mine, runners_dir=runners)
    assert [a for a in out if a.startswith("--job_server_jvm")] == mine[2:]
    cluster = ["--runner", "FlinkRunner", "--flink_master=flink-host:8081"]
    out = ed.with_engine_defaults(cluster, runners_dir=runners)
    assert not [a for a in out if a.startswith("--job_server_jvm")]


def test_spark_alone_runs_on_local_2(runners):
    got = flags(ed.with_engine_defaults(["--runner=spark"], runners_dir=runners))
    assert got["spark_master_url"] == "local[2]"
    assert got["spark_job_server_jar"] == str(runners / "spark-job-server.jar")
    assert got["sdk_worker_parallelism"] == "2" and "parallelism" not in got


def test_given_flags_win_and_parallelism_sets_the_worker_count(runners):
    argv = [
        "--runner",
        "FlinkRunner",
        "--parallelism",
        "1",
        "--environment_type=LOOPBACK",
    ]
    out = ed.with_engine_defaults(argv, runners_dir=runners)
    got = flags(out[len(argv) :])  # what was added
    assert out[: len(argv)] == argv
    assert "parallelism" not in got and got["sdk_worker_parallelism"] == "1"
    assert "environment_type" not in got and "environment_config" not in got


@pytest.mark.parametrize(
    "argv",
    [
        ["--runner", "FlinkRunner", "--flink_master=flink-host:8081"],
        ["--runner", "SparkRunner", "--spark_master_url", "spark://spark-host:7077"],
    ],
)
def test_a_cluster_master_is_kept_and_only_the_jar_added(argv, runners):
    added = ed.with_engine_defaults(argv, runners_dir=runners)[len(argv) :]
    assert len(added) == 1 and "_job_server_jar=" in added[0]


def test_a_local_engine_without_a_fetched_jar_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make runners"):
        ed.with_engine_defaults(["--runner", "FlinkRunner"], runners_dir=tmp_path)
    mine = ["--runner", "SparkRunner", "--spark_job_server_jar=/x.jar"]
    assert flags(ed.with_engine_defaults(mine, runners_dir=tmp_path))[
        "spark_master_url"
    ]


@pytest.mark.parametrize(
    "argv, name",
    [
        ([], "DirectRunner"),
        (["--runner", "flink"], "FlinkRunner"),
        (["--runner=SparkRunner"], "SparkRunner"),
        (["--runner", "BundleBasedDirectRunner"], "BundleBasedDirectRunner"),
    ],
)
def test_runner_name_is_what_metadata_records(argv, name):
    assert ed.runner_name(argv) == name
