"""The import contract (.importlinter) holds, and breaks when a layer imports upwards or
two modules import each other: what `make lint` runs in CI."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "engine", "etl", "models", "service", "shoprecs")
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--config", str(tree / ".importlinter"), "--no-cache"],
                          cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path):
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    return tmp_path


def test_the_project_keeps_its_import_contract(tree):
    result = lint(tree)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("core/config.py", "import service.workers", "Each layer imports only the layers below"),
    ("engine/snapshot.py", "import pyspark", "run without Spark"),
    ("service/auth.py", "import service.routes", "No import cycles"),
])
def test_an_upward_import_or_a_cycle_breaks_it(tree, module, line, broken):
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
