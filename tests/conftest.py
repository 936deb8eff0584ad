"""Shared fixtures: a real X display (Xvfb when headless) and a session root.

Two tiers: ``tests/unit`` needs no window and no socket and runs in seconds;
``tests/e2e`` opens real PsychoPy windows on a real (virtual) display and
talks to real servers over loopback. Nothing about the window or the
experiments is mocked there.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from session.display import ensure_display  # noqa: E402

TEST_EXPERIMENTS = Path(__file__).resolve().parent / "experiments"
EXAMPLES = PROJECT / "examples"


@pytest.fixture(scope="session")
def display():
    """Open windows on the machine's display, or on a private Xvfb when there is none."""
    return ensure_display(None)


E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config, items):
    """Every end-to-end test gets the display; unit tests never start one."""
    for item in items:
        if E2E in Path(str(item.fspath)).resolve().parents:
            item.fixturenames.insert(0, "display")


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


def liaison_command() -> list[str]:
    """The installed ``liaison`` console script (or the module, if it is not installed)."""
    script = Path(sys.executable).parent / "liaison"
    return [str(script)] if script.exists() else [sys.executable, "-m", "liaison.cli"]


def start_serve(root: Path, data_dir: Path, *extra: str, env: dict | None = None,
                stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, dict[str, str]]:
    """``liaison serve`` as a real process; returns it and its banner (``{"WebSocket": url, ...}``)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "LIAISON_TOKEN"}
    process = subprocess.Popen(
        [*liaison_command(), "serve", str(root), "--port", "0", "--data-dir", str(data_dir),
         "--window-size", "320x240", "--frame-rate", "60", *extra],
        env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, stdin=subprocess.DEVNULL,
    )
    banner: dict[str, str] = {}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("Press Ctrl+C"):  # the banner's last line
            return process, banner
        name, _, value = line.strip().partition(":")
        banner[name] = value.split()[0] if value.split() else ""
    process.kill()
    raise AssertionError(f"liaison serve did not start; it printed {banner}")


def stop_serve(process: subprocess.Popen, timeout: float = 60) -> int | None:
    """SIGTERM (a graceful shutdown), then SIGKILL if it does not end in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real liaison server on loopback, supervising a real session worker."""
    from liaison.server import ServerConfig, ServerThread

    base = tmp_path_factory.mktemp("server")
    config = ServerConfig(root=make_root(base), port=0, token="test-token-123456",
                          data_dir=base / "data", window={"size": [640, 480], "frame_rate": 60},
                          client_queue_limit=200,
                          allowed_hosts=["lab-pc.test"])  # a network name test_tls maps to loopback in Chromium
    thread = ServerThread(config)
    with thread as running:
        running.url = thread.url
        running.token = config.token
        yield running


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server of its own (see tests/pgcluster.py); fails loudly when it cannot start."""
    from pgcluster import PostgresCluster

    cluster = PostgresCluster()
    try:
        cluster.start()
    except Exception as exc:  # noqa: BLE001 - the test must fail (never skip) and say why
        log = cluster.log()
        cluster.stop()
        pytest.fail(f"could not start a PostgreSQL test cluster: {exc}\n{log}", pytrace=False)
    yield cluster
    cluster.stop()
