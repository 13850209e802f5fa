"""tools/fetch_runners.py (`make runners`) without Maven: the missing-tool error,
the launcher jar's manifest, and a fetched engine left alone (no Maven run).
The real fetch runs in `make test` before the suite."""

import json
import subprocess
import sys
import zipfile

import pytest
from repo_paths import ROOT

from tools import fetch_runners as fr

FLINK = next(r for r in fr.RUNNERS if r.engine == "flink")


def test_a_missing_tool_is_named_with_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn
    assert fr.main(["--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "`java` is not on PATH" in err and "apt-get install" in err
    assert not (tmp_path / "cache").exists()


def test_a_fetched_engine_is_left_alone_without_maven(tmp_path, monkeypatch):
    jar = tmp_path / "flink-job-server.jar"
    jar.write_bytes(b"jar")
    home = tmp_path / FLINK.directory
    home.mkdir()
    record = {"main_class": FLINK.main_class, "artifacts": list(FLINK.artifacts),
              "add_opens": list(FLINK.add_opens)}  # fmt: skip
    (home / fr.MANIFEST_FILE).write_text(json.dumps(record))
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn: it must not be needed
    assert fr.fetch(FLINK, tmp_path) == jar and jar.read_bytes() == b"jar"
    (home / fr.MANIFEST_FILE).write_text(json.dumps({**record, "artifacts": []}))
    with pytest.raises(FileNotFoundError, match="`mvn` is not on PATH"):
        fr.fetch(FLINK, tmp_path)  # other coordinates: fetched again, needs mvn


def test_the_launcher_names_the_driver_the_classpath_and_the_opens(tmp_path):
    lib = tmp_path / "home" / "lib"
    lib.mkdir(parents=True)
    names = [f"dependency-with-a-long-name-{i:03d}.jar" for i in range(40)]
    for name in names:
        (lib / name).write_bytes(b"")
    jar = tmp_path / "x.jar"
    fr.write_launcher(jar, "a.b.Main", lib, ("java.base/java.lang",))
    raw = zipfile.ZipFile(jar).read("META-INF/MANIFEST.MF")
    assert all(len(line) <= 72 for line in raw.split(b"\r\n"))
    manifest = raw.decode().replace("\r\n ", "")  # continuation lines joined
    fields = dict(line.split(": ", 1) for line in manifest.split("\r\n") if line)
    assert fields["Main-Class"] == "a.b.Main"
    assert fields["Class-Path"].split() == [f"home/lib/{n}" for n in names]
    assert fields["Add-Opens"] == "java.base/java.lang"


def test_an_unknown_engine_is_refused():
    done = subprocess.run(
        [sys.executable, "tools/fetch_runners.py", "--engines", "storm"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "Received: ['storm']" in done.stderr
