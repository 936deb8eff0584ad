"""Shared fixtures: a real X display (Xvfb when headless) and a session root.

Every test that opens a window uses a real PsychoPy window on a real (virtual)
display; nothing about the window or the experiments is mocked.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from session.display import ensure_display  # noqa: E402

TEST_EXPERIMENTS = Path(__file__).resolve().parent / "experiments"
EXAMPLES = PROJECT / "examples"


@pytest.fixture(scope="session", autouse=True)
def display():
    """Open windows on the machine's display, or on a private Xvfb when there is none."""
    return ensure_display(None)


def make_root(base: Path, *, examples: bool = True, fixtures: bool = True) -> Path:
    """A session root holding copies of the examples and the test experiments."""
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    if examples and EXAMPLES.is_dir():
        for folder in EXAMPLES.iterdir():
            if folder.is_dir() and not folder.name.startswith((".", "_")):
                shutil.copytree(folder, root / folder.name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "data"))
    if fixtures:
        shutil.copytree(TEST_EXPERIMENTS, root / "fixtures", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def session_root(tmp_path_factory) -> Path:
    return make_root(tmp_path_factory.mktemp("session"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def run_csv(data_dir: Path) -> Path:
    """The single wide-text CSV a run saved."""
    files = sorted(Path(data_dir).rglob("*.csv"))
    assert len(files) == 1, f"expected one CSV in {data_dir}, found {files}"
    return files[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real liaison server on loopback, supervising a real session worker."""
    from liaison.server import ServerConfig, ServerThread

    base = tmp_path_factory.mktemp("server")
    config = ServerConfig(root=make_root(base), port=0, token="test-token-123456",
                          data_dir=base / "data", window={"size": [640, 480], "frame_rate": 60},
                          client_queue_limit=200, abort_grace=1.0)
    thread = ServerThread(config)
    with thread as running:
        running.url = thread.url
        running.token = config.token
        yield running
