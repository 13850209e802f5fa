"""The CLI: flags -> JobConfig, unknown flags -> Beam, --help, the summary."""

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
            "tfdata",
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
    assert config.num_shards == 4 and config.engine == "tfdata" and config.overwrite
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
