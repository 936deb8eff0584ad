"""Know before a run why it would fail: compile alerts, plugins, files, devices, keyboard backend.

PsychoPy prints its compile alerts (7105: a component from a plugin that is
not installed) to stderr, where nobody watching a server sees them, and a
missing conditions file or device surfaces only halfway through setup. This
module inspects an experiment without running it and lists its *problems*,
each a dict ``{"code", "severity", "message"}``:

- ``error`` problems mean the run would fail; a run is refused with
  :class:`ExperimentProblems` listing them: ``compile_failed``,
  ``plugin_missing`` (alert 7105), ``conditions_missing``,
  ``resource_missing``, ``device_missing`` (a named device the session has
  not set up);
- ``warning`` problems are worth knowing but the run can go ahead:
  ``keyboard_backend`` (Builder keyboards set to a backend that cannot work
  here, so they see no key), ``alert`` (any other compile alert).

Inspection compiles a ``.psyexp`` (or reads a ``.py``), never imports or
runs experiment code; results are cached per file digest. Device problems
depend on the session's devices at the time, so they are added when asked.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import ExperimentError
from .experiments import Experiment, compile_builder, file_digest
from .isolation import preserved_sys_path

ERROR, WARNING = "error", "warning"
PLUGIN_ALERT = 7105
DEVICE_CONFIG_ALERT = 4810  # "no config for device X": reported as device_missing instead, against our devices
BACKEND_NAMES = {"ioHub": "iohub", "PsychToolbox": "ptb", "Pyglet": "event"}
# names a "file" param may hold that PsychoPy makes itself (grating textures and masks)
BUILTIN_TEXTURES = frozenset({"sin", "sqr", "saw", "tri", "sinXsin", "sqrXsqr", "circle", "gauss", "cross",
                              "radRamp", "raisedCos", "color"})
_SCRIPT_BACKEND = re.compile(r"""backend\s*=\s*['"](ptb|iohub|event)['"]""")


class ExperimentProblems(ExperimentError):
    """A run was refused because the experiment has problems that would make it fail."""

    def __init__(self, key: str, problems: list[dict[str, Any]]) -> None:
        errors = [p for p in problems if p["severity"] == ERROR]
        listed = "; ".join(p["message"] for p in errors)
        super().__init__(f"experiment {key!r} would fail: {listed}")
        self.details = {"key": key, "problems": problems}


def problem(code: str, severity: str, message: str, **extra: Any) -> dict[str, Any]:
    """One problem as clients see it: code, severity (error | warning), message, details."""
    return {"code": code, "severity": severity, "message": message, **extra}


@dataclass
class Inspection:
    """What an experiment file needs, read without running it."""

    digest: str
    problems: list[dict[str, Any]] = field(default_factory=list)  # independent of the session's state
    required_devices: list[str] = field(default_factory=list)
    keyboard_backend: str | None = None  # "ptb", "iohub", "event" or None (no keyboard)


# --- reading one experiment ------------------------------------------------------------------

def _constant_file(value: Any) -> str | None:
    """A file name a param holds as a constant (not ``$code``, not empty/None)."""
    text = str(value).strip() if value is not None else ""
    if not text or text.startswith("$") or text.lower() in ("none", "default"):
        return None
    return text


def _missing_files(exp, folder: Path) -> Iterable[dict[str, Any]]:
    from psychopy.tools import filetools as ft

    defaults = set(getattr(ft, "defaultStim", {}) or {})
    seen: set[str] = set()
    for entry in getattr(exp, "flow", []):
        loop = getattr(entry, "loop", None)
        if loop is None or "conditionsFile" not in getattr(loop, "params", {}):
            continue
        name = _constant_file(loop.params["conditionsFile"].val)
        if name and name not in seen and not (folder / name).is_file():
            seen.add(name)
            yield problem("conditions_missing", ERROR,
                          f"loop '{loop.params['name'].val}' reads conditions file {name!r}, which does not exist",
                          file=name)
    for routine in getattr(exp, "routines", {}).values():
        try:
            components = list(routine)
        except TypeError:  # a standalone routine
            components = [routine]
        for component in components:
            params = getattr(component, "params", {})
            if "disabled" in params and str(params["disabled"].val).lower() in ("true", "1"):
                continue
            for param in params.values():
                if getattr(param, "valType", None) != "file" or getattr(param, "updates", "constant") != "constant":
                    continue
                name = _constant_file(param.val)
                if not name or name in defaults or name in seen or "://" in name or name in BUILTIN_TEXTURES \
                        or name in (getattr(param, "allowedVals", None) or ()):
                    continue
                if not (folder / name).exists():
                    seen.add(name)
                    yield problem("resource_missing", ERROR,
                                  f"component '{params['name'].val}' uses file {name!r}, which does not exist",
                                  file=name)


def inspect_psyexp(path: Path) -> Inspection:
    """Compile ``path`` with Builder and read what it needs (main thread or any thread; no GL)."""
    from .experiments import _compile_lock

    inspection = Inspection(digest=file_digest(path))
    alerts: list[dict[str, Any]] = []
    with _compile_lock, preserved_sys_path():
        try:
            script, exp = compile_builder(path, alerts)
        except ExperimentError as exc:
            inspection.problems.append(problem("compile_failed", ERROR, str(exc)))
            return inspection
        inspection.problems.extend(_missing_files(exp, path.parent))
        try:
            inspection.required_devices = sorted(n for n in exp.getRequiredDeviceNames() if n)
        except Exception:  # noqa: BLE001 - an old or odd file: no device names known
            inspection.required_devices = []
    for alert in _distinct_alerts(alerts):
        if alert["code"] == PLUGIN_ALERT:
            inspection.problems.append(problem("plugin_missing", ERROR, alert["msg"], alert=alert["code"]))
        elif alert["code"] != DEVICE_CONFIG_ALERT:
            inspection.problems.append(problem("alert", WARNING, f"alert {alert['code']}: {alert['msg']}",
                                               alert=alert["code"]))
    inspection.keyboard_backend = _script_backend(script)
    return inspection


def inspect_script(path: Path) -> Inspection:
    """A hand-written ``.py``: only what its text says (keyboard backend)."""
    inspection = Inspection(digest=file_digest(path))
    try:
        inspection.keyboard_backend = _script_backend(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        pass
    return inspection


def _distinct_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for alert in alerts:
        marker = (alert.get("code"), alert.get("msg"))
        if marker not in seen:
            seen.add(marker)
            out.append(alert)
    return out


def _script_backend(script: str) -> str | None:
    found = _SCRIPT_BACKEND.findall(script)
    return found[0] if found else None


def _digest_or_empty(path: Path) -> str:
    try:
        return file_digest(path)
    except OSError:
        return ""


def inspect(experiment: Experiment) -> Inspection:
    """What an experiment file needs (components, devices, plugins), read without running it."""
    return inspect_psyexp(experiment.path) if experiment.kind == "psyexp" else inspect_script(experiment.path)


# --- what this machine and session can do --------------------------------------------------

def keyboard_problem(wanted: str | None) -> dict[str, Any] | None:
    """Warn when the keyboard backend an experiment asks for will not see keys in this process.

    PsychoPy picks the backend once per process (the first keyboard made
    decides); PsychToolbox's needs its audio library (libjack) to load.
    """
    if wanted is None:
        return None
    keyboard = sys.modules.get("psychopy.hardware.keyboard")  # importing it would open a display
    current = keyboard.KeyboardDevice.getBackend() if keyboard is not None else None
    effective = current or wanted
    if effective == "ptb" and not psychtoolbox_loads():
        return problem("keyboard_backend", WARNING,
                       "keyboards use the PsychToolbox backend, which cannot load here (psychtoolbox needs "
                       "libjack); they will see no key presses; choose 'Pyglet' as Keyboard backend "
                       "in the experiment settings", wanted=wanted, effective=effective)
    if current and current != wanted:
        return problem("keyboard_backend", WARNING,
                       f"keyboards ask for the '{wanted}' backend but this session already uses "
                       f"'{current}' (PsychoPy sets it once per process)", wanted=wanted, effective=current)
    return None


_ptb_loads: bool | None = None


def psychtoolbox_loads() -> bool:
    """Whether PsychToolbox's keyboard (``psychtoolbox.hid``) imports here (it needs libjack)."""
    global _ptb_loads
    if _ptb_loads is None:
        keyboard = sys.modules.get("psychopy.hardware.keyboard")
        if keyboard is not None:
            _ptb_loads = bool(keyboard.havePTB)
        else:
            try:
                from psychtoolbox import hid  # noqa: F401
                _ptb_loads = True
            except Exception:  # noqa: BLE001 - ImportError, OSError from a missing shared library
                _ptb_loads = False
    return _ptb_loads


def device_problems(required: list[str], available: set[str]) -> list[dict[str, Any]]:
    """A ``device_missing`` error for each required device the session does not have."""
    return [problem("device_missing", ERROR,
                    f"the experiment uses a device named {name!r}, which this session has not set up "
                    f"(add it with add_device)", device=name)
            for name in required if name not in available]


class ProblemChecks:
    """Cached inspections of a session's experiments (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, Inspection] = {}  # key -> inspection (valid while the digest matches)

    def cached(self, experiment: Experiment) -> Inspection | None:
        """The last inspection of ``experiment`` if its file has not changed since, else None."""
        with self._lock:
            found = self._done.get(experiment.key)
        if found is None:
            return None
        try:
            return found if file_digest(experiment.path) == found.digest else None
        except OSError:
            return None

    def check(self, experiment: Experiment) -> Inspection:
        """The inspection of ``experiment``, made now if it is missing or stale."""
        found = self.cached(experiment)
        if found is None:
            try:
                found = inspect(experiment)
            except Exception as exc:  # noqa: BLE001 - Builder fails in many ways on odd files
                found = Inspection(digest=_digest_or_empty(experiment.path), problems=[problem(
                    "inspection_failed", WARNING, f"could not inspect {experiment.path.name}: "
                    f"{type(exc).__name__}: {exc}")])
            with self._lock:
                self._done[experiment.key] = found
        return found

    def pending(self, experiments: Iterable[Experiment]) -> Experiment | None:
        """One experiment not yet inspected (cheap: no file hashing), or None."""
        with self._lock:
            done = set(self._done)
        for experiment in experiments:
            if experiment.key not in done:
                return experiment
        return None

    def problems(self, inspection: Inspection | None, devices: set[str]) -> list[dict[str, Any]] | None:
        """All problems now (None if not inspected yet)."""
        if inspection is None:
            return None
        found = list(inspection.problems)
        found += device_problems(inspection.required_devices, devices)
        backend = keyboard_problem(inspection.keyboard_backend)
        if backend:
            found.append(backend)
        return found

    @staticmethod
    def blocking(problems: list[dict[str, Any]] | None) -> bool:
        """Whether any of ``problems`` is an error (a run would fail)."""
        return any(p["severity"] == ERROR for p in problems or [])


def check_root(root: Path, key: str | None = None, devices: set[str] | None = None) -> list[dict[str, Any]]:
    """Offline: every experiment under ``root`` (or only ``key``) with its problems; runs nothing.

    ``devices`` are the names a session would have set up (none by default,
    so every named device an experiment uses is reported missing).
    """
    from .errors import NotFound
    from .experiments import discover

    found = discover(Path(root))
    if key is not None:
        found = [e for e in found if e.key == key]
        if not found:
            raise NotFound(f"no experiment with key {key!r} under {root}")
    checks = ProblemChecks()
    report = []
    for experiment in found:
        inspection = checks.check(experiment)
        devices_now = set(devices or ())
        report.append({
            **experiment.describe(Path(root).resolve()),
            "problems": checks.problems(inspection, devices_now),
            "devices": {"required": inspection.required_devices,
                        "missing": [d for d in inspection.required_devices if d not in devices_now]},
        })
    return report
