"""Check the released package works without a checkout: build, install non-editable, serve, fetch, run.

Steps (each bounded in time; any failure stops the check with a message):

1. copy the working tree's files (tracked and new, not ignored) to a scratch folder and build an sdist
   there, then the wheel *from the unpacked sdist* (so the sdist is proven complete too);
2. make a fresh virtualenv outside the checkout and install the wheel into it, non-editable. The
   dependencies (PsychoPy is large) are reused from the project's ``.venv``: a folder of links to its
   installed packages, minus this project's own, is put on the new environment's path, so pip resolves
   the wheel's requirements against them and downloads only what is missing;
3. from a folder that is not the checkout: ``liaison --version`` (and ``python -m liaison``) print the
   version in pyproject.toml, ``liaison serve`` (no ROOT: the bundled examples) starts, the dashboard
   answers 200 with every script and stylesheet it links, ``liaison run ... rt_demo`` completes and its
   CSV is in ``./liaison-data``;
4. nothing was written inside the installed package (site-packages) by serving or running.

Prints what it does and writes ``artifacts/check_wheel.json`` (wheel size and contents summary).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OWN = ("liaison", "session", "liaison_session", "__editable__", "__editable___liaison_session")
TOKEN = "check-wheel-token-0123456789"


def step(message: str) -> None:
    print(f"check_wheel: {message}", flush=True)


def run(command: list[str], *, cwd: Path, timeout: float, env: dict | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"check_wheel: FAILED: {' '.join(command)} exited {done.returncode}\n"
                         f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def project_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert match, "no version in pyproject.toml"
    return match.group(1)


def copy_working_tree(target: Path) -> None:
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, timeout=60)
    for name in filter(None, files.split("\0")):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def build(work: Path) -> tuple[Path, Path]:
    """sdist from a copy of the tree, then the wheel from the unpacked sdist."""
    source = work / "src"
    copy_working_tree(source)
    dist = work / "dist"
    backend = "from setuptools import build_meta as b; import sys; print(b.{}(sys.argv[1]))"
    sdist_name = run([sys.executable, "-c", backend.format("build_sdist"), str(dist)], cwd=source,
                     timeout=300).strip().splitlines()[-1]
    sdist = dist / sdist_name
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "sdist", filter="data")
    unpacked = next((work / "sdist").iterdir())
    wheel_name = run([sys.executable, "-c", backend.format("build_wheel"), str(dist)], cwd=unpacked,
                     timeout=300).strip().splitlines()[-1]
    return sdist, dist / wheel_name


def dependency_links(work: Path) -> Path:
    """Links to the project venv's installed packages, without this project's own files."""
    site = Path(subprocess.check_output([sys.executable, "-c",
                                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    links = work / "deps"
    links.mkdir()
    for entry in site.iterdir():
        if entry.name.startswith(OWN) or entry.suffix == ".pth":
            continue
        (links / entry.name).symlink_to(entry)
    return links


def make_venv(work: Path, deps: Path) -> Path:
    venv = work / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", str(venv)], cwd=work, timeout=300)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  cwd=work, timeout=60).strip()
    Path(purelib, "zz_liaison_check_deps.pth").write_text(str(deps) + "\n")
    return venv


class Links(HTMLParser):
    """The scripts, stylesheets and icons a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src"):
            self.found.append(values["src"])
        elif tag == "link" and values.get("href"):
            self.found.append(values["href"])


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:  # loopback only
        return response.status, response.read()


def check_dashboard(base: str) -> list[str]:
    status, page = fetch(base)
    assert status == 200, f"GET {base} answered {status}"
    links = Links()
    links.feed(page.decode("utf-8"))
    assert any(link.endswith(".js") for link in links.found), f"the dashboard links no script: {links.found}"
    seen = [base]
    pending = [link for link in links.found if not link.startswith(("http:", "https:", "data:"))]
    while pending:  # the page's files, and the ES modules they import
        link = pending.pop()
        url = base + link.lstrip("./").lstrip("/")
        if url in seen:
            continue
        status, body = fetch(url)
        assert status == 200 and body, f"GET {url} answered {status} ({len(body)} bytes)"
        seen.append(url)
        if link.endswith(".js"):
            folder = link.lstrip("./").lstrip("/").rpartition("/")[0]
            for imported in re.findall(r'^\s*import\b[^;]*?["\'](\./[^"\']+)["\']', body.decode("utf-8"), re.M):
                pending.append((folder + "/" if folder else "") + imported[2:])
    return seen


def package_files(site: Path) -> dict[str, float]:
    """Every file of the installed package, with its modification time."""
    files = {}
    for top in ("liaison", "session"):
        for path in (site / top).rglob("*"):
            if path.is_file():
                files[str(path.relative_to(site))] = path.stat().st_mtime
    return files


def serve_and_run(venv: Path, user: Path, version: str) -> dict:
    liaison = str(venv / "bin" / "liaison")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LIAISON_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    shown = run([liaison, "--version"], cwd=user, timeout=120, env=env).strip()
    assert shown == f"liaison {version}", f"liaison --version printed {shown!r}, pyproject says {version}"
    shown = run([str(venv / "bin" / "python"), "-m", "liaison", "--version"], cwd=user, timeout=120, env=env).strip()
    assert shown == f"liaison {version}", f"python -m liaison --version printed {shown!r}"
    where = run([str(venv / "bin" / "python"), "-c", "import liaison, session; print(liaison.__file__); "
                 "print(session.__file__)"], cwd=user, timeout=120, env=env).split()
    for path in where:
        assert Path(path).is_relative_to(venv), f"imported {path}, not from the new environment"
        assert not Path(path).is_relative_to(REPO), f"imported {path} from the checkout"
    site = Path(where[0]).parent.parent
    before = package_files(site)
    step(f"liaison {version} installed in {site}; serving the bundled examples from {user}")
    process = subprocess.Popen([liaison, "serve", "--port", "0", "--token", TOKEN, "--window-size", "320x240",
                                "--frame-rate", "60"], cwd=user, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    banner: dict[str, str] = {}
    output: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("Press Ctrl+C"):
                break
            name, _, value = line.strip().partition(":")
            banner[name] = value.split()[0] if value.split() else ""
        assert "Dashboard" in banner, "liaison serve did not start:\n" + "".join(output[-40:])
        serving = next(line for line in output if line.startswith("Liaison is serving ")).split(" ", 3)[3].strip()
        assert Path(serving) == site / "liaison" / "examples", f"served {serving}, not the installed examples"
        base = banner["Dashboard"].split("#", 1)[0]
        fetched = check_dashboard(base)
        step(f"dashboard: {len(fetched)} files answered 200 ({', '.join(u[len(base):] or '/' for u in fetched)})")
        started = time.monotonic()
        result = run([liaison, "run", banner["WebSocket"], "rt_demo", "--token", TOKEN, "-q",
                      "-i", "participant=wheel"], cwd=user, timeout=600, env=env)
        assert "completed" in result, f"liaison run did not complete: {result}"
        csvs = sorted((user / "liaison-data").rglob("*.csv"))
        assert csvs, f"no CSV under {user / 'liaison-data'}: {result}"
        rows = len(csvs[-1].read_text(encoding="utf-8-sig").splitlines()) - 1
        assert rows > 0, f"{csvs[-1]} has no data rows"
        step(f"rt_demo completed in {time.monotonic() - started:.1f} s: {csvs[-1].relative_to(user)} ({rows} rows)")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    after = package_files(site)
    changed = sorted(set(after) - set(before)) + sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"serving and running wrote inside the installed package: {changed[:20]}"
    step("nothing was written inside the installed package")
    return {"dashboard_files": len(fetched), "csv_rows": rows}


def summarise(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if ".dist-info/" not in n]
    groups: dict[str, int] = {}
    for name in names:
        parts = name.split("/")
        group = "/".join(parts[:2]) if parts[0] == "liaison" and len(parts) > 2 else parts[0]
        groups[group] = groups.get(group, 0) + 1
    return {"wheel": wheel.name, "bytes": wheel.stat().st_size, "files": len(names), "groups": groups}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (its path is printed)")
    args = parser.parse_args()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="liaison-wheel-"))
    try:
        version = project_version()
        step(f"building sdist and wheel of {version} in {work}")
        sdist, wheel = build(work)
        summary = summarise(wheel)
        step(f"{wheel.name}: {summary['bytes'] / 1024:.0f} KiB, {summary['files']} files {summary['groups']}; "
             f"{sdist.name}: {sdist.stat().st_size / 1024:.0f} KiB")
        venv = make_venv(work, dependency_links(work))
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input", str(wheel)],
            cwd=work, timeout=900)
        user = work / "user"
        user.mkdir()
        summary.update(serve_and_run(venv, user, version))
        summary["sdist_bytes"] = sdist.stat().st_size
        summary["seconds"] = round(time.monotonic() - started, 1)
        (REPO / "artifacts").mkdir(exist_ok=True)
        (REPO / "artifacts" / "check_wheel.json").write_text(json.dumps(summary, indent=2) + "\n")
        step(f"OK in {summary['seconds']} s")
        return 0
    finally:
        if args.keep:
            step(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
