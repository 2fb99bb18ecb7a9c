"""The package (issue 13): `python -m build` makes a wheel that, installed into a fresh
virtualenv, gives a working `cnm`.

Kept fast without cheating on what is tested: the wheel is built from a copy of the sources
(`--no-isolation`: with the dev venv's setuptools, no download), installed with `--no-deps` into
a new venv, and that venv sees the dev venv's already-installed dependencies through a `.pth`
line. The test then checks that `cnm` runs from the new venv's own copy of the package (not the
editable checkout) and that the wheel declares every dependency the agent imports.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )
    assert completed.returncode == 0, f"{argv}: {completed.stdout}\n{completed.stderr}"
    return completed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", source / "src", ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, source)
    (built,) = out.glob("cnm-*.whl")
    return built


def test_the_wheel_holds_the_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("cnm/__main__.py", "cnm/daemon.py", "cnm/ops/metrics.py", "cnm/py.typed"):
        assert module in names, module
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "cnm = cnm.cli.main:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_in_a_fresh_venv_cnm_works(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel)
    purelib = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    )
    # The dependencies, already installed in the dev venv (appended after the venv's own path).
    (purelib / "dev-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    where = run(python, "-c", "import cnm; print(cnm.__file__)").stdout.strip()
    assert Path(where).is_relative_to(venv), where
    requires = run(
        python, "-c", "import importlib.metadata as m; print('\\n'.join(m.requires('cnm')))"
    ).stdout
    for dependency in ("starlette", "uvicorn", "httpx", "prometheus-client", "cryptography"):
        assert dependency in requires, requires

    cnm = venv / "bin" / "cnm"
    assert "node" in run(cnm, "--help").stdout
    checked = run(
        cnm, "node", "run", "--check-config", "--addr", "127.0.0.1", "--data-dir", tmp_path / "d"
    )
    assert "configuration: OK" in checked.stdout
