"""The wheel holds the whole project: every module, the dashboard, the examples; metadata in one place.

The wheel is really built (setuptools' backend, from a copy of the tree so the
checkout gets no build/ or egg-info) and its file list compared with the
files on disk, so a new module, subpackage or dashboard file that the
packaging would leave out fails here, not on a lab's stimulus PC.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "data", ".compiled", "*.egg-info")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    source = tmp_path_factory.mktemp("source")
    for folder in ("liaison", "session", "web", "examples"):
        shutil.copytree(PROJECT / folder, source / folder, ignore=IGNORED)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; import sys; print(b.build_wheel(sys.argv[1]))",
         str(out)], cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    archive = zipfile.ZipFile(out / done.stdout.strip().splitlines()[-1])
    yield archive
    archive.close()


def files_under(folder: Path, pattern: str = "*") -> list[Path]:
    return [p for p in folder.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts
            and "data" not in p.relative_to(folder).parts]


def test_every_module_is_in_the_wheel(wheel):
    names = set(wheel.namelist())
    modules = [p.relative_to(PROJECT).as_posix() for top in ("liaison", "session")
               for p in files_under(PROJECT / top, "*.py")]
    assert len(modules) > 40
    assert sorted(m for m in modules if m not in names) == []


def test_the_protocol_doc_template_is_in_the_wheel(wheel):
    assert "liaison/protocol/protocol.template.md" in wheel.namelist(), "markdown_doc() reads it"


def test_every_dashboard_file_is_in_the_wheel_under_liaison_web(wheel):
    names = set(wheel.namelist())
    web = ["liaison/web/" + p.relative_to(PROJECT / "web").as_posix() for p in files_under(PROJECT / "web")]
    assert "liaison/web/index.html" in web
    assert sorted(w for w in web if w not in names) == []


def test_the_examples_are_in_the_wheel_without_their_data(wheel):
    names = set(wheel.namelist())
    examples = ["liaison/examples/" + p.relative_to(PROJECT / "examples").as_posix()
                for p in files_under(PROJECT / "examples")]
    assert "liaison/examples/rt_demo/rt_demo.py" in examples
    assert sorted(e for e in examples if e not in names) == []
    assert [n for n in names if "/data/" in n or "__pycache__" in n or n.endswith(".pyc")] == []


def test_metadata_version_license_and_entry_point(wheel):
    info = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    metadata = wheel.read(info).decode()
    version = re.search(r'^version\s*=\s*"([^"]+)"', (PROJECT / "pyproject.toml").read_text(), re.M).group(1)
    assert f"\nVersion: {version}\n" in metadata
    assert "\nLicense-Expression: GPL-3.0-or-later\n" in metadata
    assert "Requires-Dist: cryptography" in metadata
    entry_points = wheel.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "liaison = liaison.cli:main" in entry_points
    assert "liaison/__main__.py" in wheel.namelist()


def test_resources_are_found_from_the_checkout():
    from liaison.resources import examples_dir, missing_dashboard_files, web_dir

    assert web_dir() == PROJECT / "web"
    assert examples_dir() == PROJECT / "examples"
    assert missing_dashboard_files(web_dir()) == []


def test_missing_dashboard_files_are_named_with_the_fix(tmp_path):
    from liaison.checks import dashboard_problems

    (tmp_path / "index.html").write_text("<html></html>")
    [problem] = dashboard_problems(tmp_path)
    assert "js/app.js" in problem and "index.html" not in problem.split("missing")[1].split(";")[0]
    assert "pip install --force-reinstall liaison-session" in problem
    assert "no dashboard folder" in dashboard_problems(None)[0]


def test_the_data_folder_of_installed_examples_is_outside_the_installation(tmp_path, monkeypatch):
    from liaison.resources import default_data_dir, is_inside_installation

    installed = tmp_path / "lib" / "python3.11" / "site-packages" / "liaison" / "examples"
    monkeypatch.chdir(tmp_path)
    assert is_inside_installation(installed)
    assert default_data_dir(installed) == tmp_path / "liaison-data"
    assert default_data_dir(tmp_path / "lab") == tmp_path / "lab" / "data"


def test_liaison_py_shadowing_is_explained_by_serve(tmp_path):
    """PsychoPy Studio's ``liaison-py`` also installs a module ``liaison``: serve refuses and says how to fix it."""
    import os

    other = tmp_path / "other-site"
    (other / "liaison_py-0.3.0.dist-info").mkdir(parents=True)
    (other / "liaison_py-0.3.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: liaison-py\n"
                                                                   "Version: 0.3.0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), str(other)])}
    done = subprocess.run([sys.executable, "-m", "liaison", "serve", str(PROJECT / "examples")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "liaison-py" in done.stderr and "pip uninstall -y liaison-py" in done.stderr
    assert not (tmp_path / "liaison-data").exists()  # refused before anything was made


def test_a_missing_dependency_is_named_with_the_fix(monkeypatch):
    from liaison import checks

    assert checks.dependency_problems() == []  # this environment has them all
    monkeypatch.setitem(checks.REQUIRED_MODULES, "liaison_no_such_module", "liaison-no-such-dist")
    [problem] = checks.dependency_problems()
    assert "liaison-no-such-dist is not installed" in problem and "pip install liaison-no-such-dist" in problem


def test_python_dash_m_liaison_prints_the_metadata_version():
    import os
    from importlib.metadata import version

    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-m", "liaison", "--version"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"liaison {version('liaison-session')}"
