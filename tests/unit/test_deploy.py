"""Unpacking uploaded experiments: refused entries write nothing anywhere; accepted ones land whole.

Real zip files written with :mod:`zipfile` (symbolic links as a Unix zip
tool records them), unpacked into a real folder.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from liaison.server.deploy import REPLACED_DIR, DeployError, Limits, check_name, check_root, unpack
from session.experiments import discover
from session.rescan import find_new

PROJECT = Path(__file__).resolve().parents[2]
SCRIPT = (PROJECT / "examples" / "rt_demo" / "rt_demo.py").read_text()
LIMITS = Limits.for_upload(10 << 20)


def make_zip(path: Path, entries: dict[str, str | bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix: the mode's file type counts
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def snapshot(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.fixture
def place(tmp_path):
    """A session root inside a folder we watch, so a write outside the root would be seen."""
    root = tmp_path / "root"
    root.mkdir()
    return tmp_path, root


def test_a_zipped_folder_lands_as_root_name(place):
    outside, root = place
    archive = make_zip(outside / "up.zip", {"mine/pushed_rt.py": SCRIPT, "mine/stimuli/a.txt": "a"})
    result = unpack(archive, root, "pushed", LIMITS)
    assert result["folder"] == "pushed" and result["files"] == 2
    assert result["experiments"] == ["pushed_rt.py"]
    assert (root / "pushed" / "pushed_rt.py").read_text() == SCRIPT  # the one top folder is not repeated
    assert (root / "pushed" / "stimuli" / "a.txt").read_text() == "a"
    assert snapshot(root) == {"pushed", "pushed/pushed_rt.py", "pushed/stimuli", "pushed/stimuli/a.txt"}


@pytest.mark.parametrize("bad, why", [
    ("../evil.py", r"outside its folder \(\.\.\)"),
    ("ok/../../evil.py", r"outside its folder \(\.\.\)"),
    ("{outside}/evil.py", "absolute path"),  # where a careless unpacker would write: watched below
    ("C:/evil.py", "absolute path"),
    ("ok\\..\\evil.py", "backslashes"),
])
def test_escaping_entries_are_refused_and_nothing_is_written(place, bad, why):
    outside, root = place
    before = snapshot(outside)
    bad = bad.replace("{outside}", str(outside))
    archive = make_zip(outside / "up.zip", {"pushed_rt.py": SCRIPT, bad: "print('pwned')"})
    before.add("up.zip")
    with pytest.raises(DeployError, match=why) as refused:
        unpack(archive, root, "pushed", LIMITS)
    assert refused.value.code == "invalid_args"
    assert snapshot(outside) == before  # nothing inside the root, nothing beside it


def test_symbolic_links_are_refused(place):
    outside, root = place
    archive = make_zip(outside / "up.zip", {"pushed_rt.py": SCRIPT}, links={"secrets": "/etc/passwd"})
    with pytest.raises(DeployError, match="symbolic link"):
        unpack(archive, root, "pushed", LIMITS)
    assert snapshot(root) == set()


def test_too_many_bytes_once_unpacked_are_refused_before_writing(place):
    outside, root = place
    archive = make_zip(outside / "up.zip", {"pushed_rt.py": SCRIPT, "big.bin": b"\0" * 50_000})
    with pytest.raises(DeployError, match="unpacks to") as refused:
        unpack(archive, root, "pushed", Limits(archive_bytes=10_000, unpacked_bytes=40_000))
    assert refused.value.code == "too_large"
    assert snapshot(root) == set()


def test_an_archive_without_an_experiment_or_not_a_zip_leaves_nothing(place):
    outside, root = place
    with pytest.raises(DeployError, match="no experiment"):
        unpack(make_zip(outside / "up.zip", {"notes.txt": "hello"}), root, "pushed", LIMITS)
    (outside / "junk.zip").write_bytes(b"this is not a zip")
    with pytest.raises(DeployError, match="not a zip"):
        unpack(outside / "junk.zip", root, "pushed", LIMITS)
    assert snapshot(root) == set()


def test_an_existing_folder_is_replaced_only_when_asked_and_not_in_use_and_is_kept(place):
    outside, root = place
    unpack(make_zip(outside / "one.zip", {"pushed_rt.py": SCRIPT, "v.txt": "1"}), root, "pushed", LIMITS)
    second = make_zip(outside / "two.zip", {"pushed_rt.py": SCRIPT, "v.txt": "2"})
    with pytest.raises(DeployError, match="already exists") as refused:
        unpack(second, root, "pushed", LIMITS)
    assert refused.value.code == "conflict"
    with pytest.raises(DeployError, match="used by the run in progress"):
        unpack(second, root, "pushed", LIMITS, replace=True, in_use=True)
    assert (root / "pushed" / "v.txt").read_text() == "1"
    result = unpack(second, root, "pushed", LIMITS, replace=True)
    assert (root / "pushed" / "v.txt").read_text() == "2"
    kept = root / result["replaced"]
    assert kept.parent.name == REPLACED_DIR and (kept / "v.txt").read_text() == "1"
    assert [e.key for e in discover(root)] == ["pushed_rt"]  # the kept copy is hidden from discovery


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "data", "__pycache__", "x" * 101, "trail."])
def test_folder_names_are_one_plain_component(name):
    with pytest.raises(DeployError, match="folder name"):
        check_name(name)


def test_the_installed_examples_cannot_be_deployed_to(tmp_path):
    installed = tmp_path / "lib" / "site-packages" / "liaison" / "examples"
    installed.mkdir(parents=True)
    with pytest.raises(DeployError, match="bundled with the installed package"):
        check_root(installed, tmp_path / "data")


def test_rescan_finds_new_experiments_and_keeps_known_keys(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "rt.py").write_text(SCRIPT)
    known = {e.key: e for e in discover(tmp_path)}
    assert list(known) == ["rt"] and find_new(tmp_path, known) == []
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "rt.py").write_text(SCRIPT)  # same stem: keyed by its path
    (tmp_path / "b" / "other.py").write_text(SCRIPT)
    new = find_new(tmp_path, known)
    assert sorted(e.key for e in new) == ["b-rt", "other"]
    assert known["rt"].path == tmp_path / "a" / "rt.py"
