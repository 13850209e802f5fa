"""The CLI: flags -> JobConfig, leftover flags -> Beam (or refused), --help, the
summary, and a stderr free of TensorFlow's start-up lines."""

import os
import re
import subprocess
import sys

import pytest

from pipeline.cli.main import main, make_parser, parse_args


def test_flags_map_onto_job_config():
    config, beam_argv = parse_args(
        [
            "--input",
            "in*",
            "--output",
            "o",
            "--columns",
            "c.py",
            "--batch_size",
            "32",
            "--bucket_boundaries",
            "8,16",
            "--num_shards",
            "4",
            "--engine",
            "beam",
            "--overwrite",
            "--runner",
            "DirectRunner",
            "--direct_num_workers=2",
        ]
    )
    assert (config.input_pattern, config.output_dir, config.columns_file) == (
        "in*",
        "o",
        "c.py",
    )
    assert config.batch_size == 32 and config.bucket_boundaries == (8, 16)
    assert config.num_shards == 4 and config.engine == "beam" and config.overwrite
    assert beam_argv == ["--runner", "DirectRunner", "--direct_num_workers=2"]
    defaults, _ = parse_args(["--input", "i", "--output", "o", "--columns", "c"])
    assert defaults.batch_size == 64 and defaults.bucket_boundaries == "auto"
    assert defaults.engine == "beam" and defaults.num_shards is None


@pytest.mark.parametrize(
    "bad",
    [["--batch_size", "0"], ["--bucket_boundaries", "9,3"], ["--engine", "spark"]],
)
def test_bad_flags_exit_with_usage(bad):
    with pytest.raises(SystemExit):
        parse_args(["--input", "i", "--output", "o", "--columns", "c", *bad])


def test_help_documents_every_flag():
    text = make_parser().format_help()
    for flag in (
        "--input",
        "--output",
        "--columns",
        "--batch_size",
        "--bucket_boundaries",
        "--num_shards",
        "--engine",
        "--overwrite",
        "--runner",
    ):
        assert flag in text
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--bucket_boundaries" in out.stdout


def test_main_prints_a_summary(dataset, tmp_path, capsys):
    assert (
        main(
            [
                "--input",
                dataset["pattern"],
                "--columns",
                dataset["columns"],
                "--output",
                str(tmp_path / "o"),
                "--engine",
                "tfdata",
                "--batch_size",
                "16",
                "--no_progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "examples written" in out and "padding efficiency" in out
    assert re.search(r"dead letters +13 ", out) and "time" in out


JOB = ["--input", "i", "--output", "o", "--columns", "c"]


@pytest.mark.parametrize(
    "extra, engine, message",
    [
        (["--batch_sise", "32"], "beam", "--batch_sise .* Did you mean --batch_size?"),
        (["--batch_sise=32"], "tfdata", "--batch_sise .* Did you mean --batch_size?"),
        (["--runer", "DirectRunner"], "beam", "Did you mean --runner?"),
        (["--runner", "DirectRunner"], "tfdata", "with --engine tfdata Beam's"),
        (["--direct_num_workers=2"], "tfdata", "--direct_num_workers"),
        (["stray"], "beam", "Unexpected argument 'stray'"),
    ],
)
def test_leftover_flags_that_would_do_nothing_are_errors(extra, engine, message):
    with pytest.raises(ValueError, match=message):
        parse_args([*JOB, "--engine", engine, *extra])


def test_beam_options_pass_through_with_the_beam_engine():
    _, beam_argv = parse_args(
        [*JOB, "--runner", "DirectRunner", "--direct_running_mode", "in_memory"]
    )
    assert beam_argv == [
        "--runner",
        "DirectRunner",
        "--direct_running_mode",
        "in_memory",
    ]


def test_a_mistyped_flag_stops_before_any_work(dataset, tmp_path, capsys):
    out = tmp_path / "o"
    argv = [
        "--input",
        dataset["pattern"],
        "--columns",
        dataset["columns"],
        "--output",
        str(out),
        "--batch_sise",
        "32",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Unknown flag --batch_sise" in err and "--batch_size" in err
    assert not out.exists()


# seqshards' own stderr lines: progress lines and the Beam runner's warnings we
# do not control are not expected on these runs.
OWN_LINE = re.compile(
    r"^(lengths pass|materialize|read|features|stats): [\d,]+ (records|examples)\b"
)
TF_NOISE = (
    "absl",
    "oneDNN",
    "cuda",
    "cuInit",
    "I0000",
    "W0000",
    "E0000",
    "cpu_feature",
)


def run_cli(args, cwd, env_level=None):
    """`python -m pipeline ARGS` in `cwd` (stats and inspect write their
    figures there); returns its stderr lines."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)  # this checkout, from any cwd
    if env_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = env_level
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


@pytest.mark.slow  # four CLI processes, ~10 s each
def test_every_command_keeps_tensorflow_start_up_lines_off_stderr(dataset, tmp_path):
    base = ["--input", dataset["pattern"], "--columns", dataset["columns"]]
    runs = {
        "tfdata": run_cli(
            [*base, "--output", str(tmp_path / "t"), "--engine", "tfdata"], tmp_path
        ),
        "beam": run_cli(
            [*base, "--output", str(tmp_path / "b"), "--engine", "beam"], tmp_path
        ),
        "stats": run_cli(["stats", *base], tmp_path),
        "inspect": run_cli(["inspect", str(tmp_path / "t")], tmp_path),
    }
    for command, lines in runs.items():
        assert all(OWN_LINE.match(line) for line in lines), (command, lines)
    assert runs["tfdata"] and runs["stats"]  # the progress lines are there
    # A user who asks for TensorFlow's logs gets them.
    verbose = run_cli(["stats", *base], tmp_path, env_level="0")
    assert any(noise in line for line in verbose for noise in TF_NOISE), verbose
