"""The scripts of bench/ as modules, for the tests (bench/ is not a package)."""

import importlib.util
import pathlib
import sys

from repo_paths import ROOT

BENCH = pathlib.Path(ROOT) / "bench"


def load(name: str):
    """bench/<name>.py as the module `bench_<name>` (registered in sys.modules:
    dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
