"""Every command the README shows is exercised.

Rules for the README's fenced blocks (every block carries a language tag):
  sh       each command is `make <target>` (a Makefile target), activating the
           venv, covered by a named test (`COVERED_BY`), a remote-runner job
           (parsed: seqshards flags, known Beam options, an existing
           --setup_file), or run here on the sample (in a sandbox directory
           with `data/` and `examples/`, `seqshards` = `python -m pipeline`).
  python   run here in the sandbox, in document order; a block whose first
           line is `# NAME.py` is written to the sandbox as NAME.py instead.
  yaml     loaded as a columns spec; the quickstart one must equal
           data/columns.yaml.
  text     a block starting with `$ COMMAND` is a transcript: the command is run
           and every following line must appear in its output.
"""

import importlib
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from repo_paths import ROOT  # noqa: E402

DOCS = ["README.md"]
LANGS = {"sh", "python", "yaml", "text"}
LOCAL_RUNNERS = {None, "DirectRunner", "direct"}
# Commands exercised by another test: command -> (test file, test name, must contain).
COVERED_BY = {
    "python examples/train_rnn.py --data out": (
        "tests/examples/test_train_rnn.py",
        "test_example_beats_the_majority_baseline_on_held_out_batches",
        '"--data"',
    ),
    "STORAGE_EMULATOR_HOST=http://127.0.0.1:4443 seqshards --input "
    "'gs://bucket/in/*.tfrecord' --columns gs://bucket/in/columns.yaml "
    "--output gs://bucket/out": (
        "tests/pipeline/test_driver_object_store.py",
        "test_kill_mid_commit_is_refused_and_a_rerun_completes",
        '[sys.executable, "-m", "pipeline", *args]',
    ),
    "python -m apache_beam.runners.portability.local_job_service_main --port 8099": (
        "tests/pipeline/beam/test_portable.py",
        "test_portable_runner_with_external_worker_pool",
        "apache_beam.runners.portability.local_job_service_main",
    ),
    "python -m apache_beam.runners.worker.worker_pool_main --service_port 50000": (
        "tests/pipeline/beam/test_portable.py",
        "test_portable_runner_with_external_worker_pool",
        "apache_beam.runners.worker.worker_pool_main",
    ),
}


def _docs():
    out = []
    for rel in DOCS:
        path = os.path.join(ROOT, rel)
        if os.path.exists(path):
            out.append(rel)
    return out


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [
        (m.group(1), m.group(2))
        for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)
    ]


def commands(body: str) -> list[list[str]]:
    """Shell commands of an sh block as argv lists (continuations joined,
    comments and a trailing `&` dropped)."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv and argv[-1] == "&":
            argv = argv[:-1]
        if argv:
            out.append(argv)
    return out


def _makefile_targets() -> set[str]:
    text = open(os.path.join(ROOT, "Makefile")).read()
    return set(re.findall(r"^([a-z][a-z-]*):", text, re.M))


def _job_argv(argv):
    """The job's own argv for `seqshards ...` / `python -m pipeline ...`, or None."""
    if argv[0] == "seqshards":
        return argv[1:]
    if argv[:3] == ["python", "-m", "pipeline"]:
        return argv[3:]
    return None


def classify(argv: list[str]) -> str:
    """How a README command is exercised (raises AssertionError if it is not)."""
    line = shlex.join(argv)
    if argv[0] == "make":
        assert len(argv) == 2 and argv[1] in _makefile_targets(), line
        return "make"
    if argv in (["source", ".venv/bin/activate"], [".", ".venv/bin/activate"]):
        return "venv"
    if line in COVERED_BY:
        return "covered"
    job = _job_argv(argv)
    if job is not None and job[:1] not in (["stats"], ["inspect"]):
        from apache_beam.options.pipeline_options import PipelineOptions

        from pipeline.cli.main import parse_args

        _, beam_argv = parse_args(job)
        options = PipelineOptions(beam_argv).get_all_options(drop_default=True)
        if options.get("runner") not in LOCAL_RUNNERS:
            return "remote"
    if job is not None or argv[:1] == ["python"]:
        return "run"
    raise AssertionError(f"README command not exercised by any test: {line}")


@pytest.mark.parametrize("doc", _docs())
def test_every_readme_command_is_exercised(doc):
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    found = blocks(text)
    assert found, doc
    untagged = [body.splitlines()[:1] for lang, body in found if lang not in LANGS]
    assert not untagged, f"fenced blocks need a tag in {sorted(LANGS)}: {untagged}"
    kinds = {}
    for lang, body in found:
        if lang == "sh":
            for argv in commands(body):
                kinds[shlex.join(argv)] = classify(argv)
    assert {"make run", "make test"} <= set(kinds), "the two commands come first"
    assert list(kinds)[:2] == ["make run", "make test"]
    assert {"remote", "run"} <= set(kinds.values())


@pytest.mark.parametrize("doc", _docs())
def test_remote_runner_commands_parse(doc):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.cli.main import parse_args

    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    runners = set()
    for lang, body in blocks(text):
        for argv in commands(body) if lang == "sh" else []:
            if classify(argv) != "remote":
                continue
            _, beam_argv = parse_args(_job_argv(argv))
            options = PipelineOptions(beam_argv).get_all_options(drop_default=True)
            flags = {a[2:].split("=")[0] for a in beam_argv if a.startswith("--")}
            assert flags <= set(options), f"unknown Beam options {flags - set(options)}"
            runners.add(options["runner"])
            if options["runner"] != "PortableRunner" or "setup_file" in options:
                assert os.path.isfile(os.path.join(ROOT, options["setup_file"]))
    assert {"DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner"} <= runners


@pytest.mark.parametrize("doc", _docs())
def test_commands_covered_elsewhere_are_in_their_tests(doc):
    for command, (path, test_name, needle) in COVERED_BY.items():
        source = open(os.path.join(ROOT, path)).read()
        assert f"def {test_name}(" in source and needle in source, command
    assert (
        "seqshards=pipeline.cli.main:main"
        in open(os.path.join(ROOT, "setup.py")).read()
    )
    assert callable(importlib.import_module("pipeline.cli.main").main)


@pytest.mark.parametrize("doc", _docs())
def test_readme_yaml_is_the_sample_columns_spec(doc, tmp_path):
    from pipeline.stages import config

    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    specs = [body for lang, body in blocks(text) if lang == "yaml"]
    assert specs
    sample = yaml.safe_load(open(os.path.join(ROOT, "data", "columns.yaml")))
    for i, body in enumerate(specs):
        path = tmp_path / f"spec{i}.yaml"
        path.write_text(body)
        assert config.load_columns(str(path)).columns
    assert yaml.safe_load(specs[0]) == sample


def _sandbox(tmp_path):
    for name in ("data", "examples", "setup.py"):
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    return tmp_path


def _run(argv, cwd) -> subprocess.CompletedProcess:
    job = _job_argv(argv)
    if job is not None:
        argv = [sys.executable, "-m", "pipeline", *job]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, (shlex.join(argv), result.stderr[-3000:])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("doc", _docs())
def test_readme_runs_on_the_sample(doc, tmp_path, monkeypatch):
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    cwd = _sandbox(tmp_path)
    outputs: dict[str, str] = {}

    def run_once(argv):
        key = shlex.join(argv)
        if key not in outputs:
            outputs[key] = _run(argv, cwd).stdout
        return outputs[key]

    ran_python = 0
    for lang, body in blocks(text):
        if lang == "sh":
            for argv in commands(body):
                if classify(argv) == "run":
                    run_once(argv)
        elif lang == "text" and body.startswith("$ "):
            first, *expected = body.splitlines()
            stdout = run_once(shlex.split(first[2:]))
            lines = {line.rstrip() for line in stdout.splitlines()}
            missing = [line for line in expected if line.rstrip() not in lines]
            assert not missing, (first, missing, stdout)
        elif lang == "python":
            name = re.match(r"# (\w+\.py)\n", body)
            if name:
                (cwd / name.group(1)).write_text(body)
                continue
            monkeypatch.chdir(cwd)
            exec(compile(body, f"{doc}:python-block", "exec"), {"__name__": "readme"})
            ran_python += 1
    assert ran_python >= 2
    assert (cwd / "out" / "metadata.json").exists()
    assert (cwd / "stats.png").exists() and (cwd / "inspect.png").exists()
    assert (cwd / "out_migrated" / "metadata.json").exists()
