"""Find, validate, compile and load experiments under a session root.

Discovery reads files without importing them: ``.psyexp`` files are parsed
as XML and Builder-style ``.py`` scripts with :mod:`ast`, so a broken or
malicious script cannot run code just by being listed. Loading imports a
script by file path under a private module name, so an experiment can never
shadow (or be shadowed by) an installed package whatever its file is called,
and inside :func:`session.isolation.experiment_scope`, so its folder's own
modules (``helpers.py``) are its own and ``sys.path`` is left as it was.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import sys
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ExperimentError, NotFound, PathOutsideRoot
from .isolation import experiment_scope, preserved_sys_path
from .names import check_key, key_candidates, safe_file_name

BUILDER_FUNCTIONS = ("setupData", "run")
OPTIONAL_FUNCTIONS = ("setupWindow", "setupDevices", "saveData", "endExperiment", "pauseExperiment")
SKIP_DIRS = {"__pycache__", "data", "node_modules", "site-packages", "venv", "env"}
MAX_FILES = 5000


@dataclass(slots=True)
class Experiment:
    """An experiment registered under ``key``; ``module`` is set once loaded."""

    key: str
    path: Path
    kind: str  # "psyexp" or "py"
    exp_info: dict[str, Any] = field(default_factory=dict)
    module: ModuleType | None = None
    script: Path | None = None
    digest: str = ""

    def describe(self, root: Path) -> dict[str, Any]:
        """The experiment as clients see it: key, path relative to ``root``, kind and expInfo defaults.

        Raises ValueError if ``path`` is not under ``root``.
        """
        return {
            "key": self.key,
            "path": self.path.relative_to(root).as_posix(),
            "kind": self.kind,
            "exp_info": dict(self.exp_info),
        }


def resolve_inside(root: Path, path: str | os.PathLike) -> Path:
    """Resolve ``path`` (relative to ``root`` or absolute) and insist it lies inside."""
    root = root.resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise PathOutsideRoot(f"{path!s} is outside the session root {root}")
    return resolved


def strip_pipe(key: str) -> str:
    """Builder marks expInfo keys like ``'date|hid'``; the data use ``'date'``."""
    return key.split("|", 1)[0]


def file_digest(path: Path) -> str:
    """Hex sha256 of the file's bytes (the file is read whole). Raises OSError if unreadable."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- reading without importing -------------------------------------------------

def _literal_dict(node: ast.AST) -> dict[str, Any]:
    """Keys of a dict literal whose values are literals; other values become None."""
    result: dict[str, Any] = {}
    if not isinstance(node, ast.Dict):
        return result
    for key_node, value_node in zip(node.keys, node.values):
        if not isinstance(key_node, ast.Constant) or not isinstance(key_node.value, str):
            continue
        try:
            value = ast.literal_eval(value_node)
        except (ValueError, SyntaxError, TypeError):
            value = None
        result[key_node.value] = value
    return result


def inspect_script(path: Path) -> dict[str, Any] | None:
    """Return expInfo defaults if ``path`` looks like a Builder-style script, else None."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return None
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if not all(name in functions for name in BUILDER_FUNCTIONS):
        return None
    exp_info: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "expInfo" for t in node.targets
        ):
            exp_info = _literal_dict(node.value)
    return {strip_pipe(k): v for k, v in exp_info.items()}


def inspect_psyexp(path: Path) -> dict[str, Any]:
    """expInfo defaults from a ``.psyexp`` file's settings, parsed as XML."""
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise ExperimentError(f"{path.name} is not a readable .psyexp file: {exc}") from exc
    if tree.getroot().tag != "PsychoPy2experiment":
        raise ExperimentError(f"{path.name} is not a PsychoPy Builder experiment")
    for param in tree.getroot().iter("Param"):
        if param.get("name") == "Experiment info":
            try:
                node = ast.parse(param.get("val", "{}"), mode="eval").body
            except SyntaxError:
                return {}
            if isinstance(node, (ast.List, ast.Tuple)):  # newer files: [[key, value], ...]
                pairs = {}
                for item in node.elts:
                    try:
                        k, v = ast.literal_eval(item)
                    except (ValueError, SyntaxError, TypeError):
                        continue
                    pairs[str(k)] = v
                return {strip_pipe(k): v for k, v in pairs.items()}
            return {strip_pipe(k): v for k, v in _literal_dict(node).items()}
    return {}


def discover(root: Path) -> list[Experiment]:
    """Every experiment under ``root``, keyed by file stem (or relative path if stems clash)."""
    root = root.resolve()
    found: list[tuple[Path, str, dict[str, Any]]] = []
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
        )
        folder = Path(dirpath)
        psyexp_stems = {Path(f).stem for f in filenames if f.endswith(".psyexp")}
        for name in sorted(filenames):
            seen += 1
            if seen > MAX_FILES:
                break
            path = folder / name
            if name.endswith(".psyexp"):
                try:
                    found.append((path, "psyexp", inspect_psyexp(path)))
                except ExperimentError:
                    continue
            elif name.endswith(".py") and not name.startswith("_"):
                if path.stem in psyexp_stems:  # Builder's own compiled copy
                    continue
                info = inspect_script(path)
                if info is not None:
                    found.append((path, "py", info))
    keys = unique_keys([path.relative_to(root) for path, _, _ in found])
    return [Experiment(key=key, path=path, kind=kind, exp_info=info)
            for key, (path, kind, info) in zip(keys, found)]


def unique_keys(relatives: list[Path]) -> list[str]:
    """A valid, distinct key per file: its stem, or ``parent-stem`` / the whole path where stems clash."""
    options = [key_candidates(r) for r in relatives]
    level = [0] * len(relatives)
    for _ in range(3):
        chosen = [opts[min(lv, len(opts) - 1)] for opts, lv in zip(options, level)]
        clashing = {k for k in chosen if chosen.count(k) > 1}
        if not clashing:
            return chosen
        level = [lv + 1 if c in clashing else lv for c, lv in zip(chosen, level)]
    chosen = [opts[min(lv, len(opts) - 1)] for opts, lv in zip(options, level)]
    seen: dict[str, int] = {}
    result = []
    for key in chosen:  # clashes left by sanitising ("a b" and "a_b"): number them
        seen[key] = seen.get(key, 0) + 1
        result.append(key if seen[key] == 1 else f"{key[:96]}-{seen[key]}")
    return result


def make_experiment(root: Path, path: str | os.PathLike, key: str | None = None) -> Experiment:
    """Validate one experiment file under ``root`` and describe it (no import)."""
    resolved = resolve_inside(root, path)
    if not resolved.is_file():
        raise NotFound(f"no experiment file at {path!s}")
    if resolved.suffix == ".psyexp":
        kind, info = "psyexp", inspect_psyexp(resolved)
    elif resolved.suffix == ".py":
        info = inspect_script(resolved)
        if info is None:
            raise ExperimentError(
                f"{resolved.name} is not a Builder-style script: it must define "
                + " and ".join(f"{name}()" for name in BUILDER_FUNCTIONS)
            )
        kind = "py"
    else:
        raise ExperimentError(f"{resolved.name}: experiments are .psyexp or .py files")
    key = check_key(key) if key is not None else safe_file_name(resolved.stem, "experiment")
    return Experiment(key=key, path=resolved, kind=kind, exp_info=info)


# --- compiling and loading ----------------------------------------------------

_compile_lock = threading.Lock()


def compile_psyexp(path: Path, cache_dir: Path) -> Path:
    """Compile a ``.psyexp`` to a script in ``cache_dir``; reuse it while the file is unchanged."""
    digest = file_digest(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    script = cache_dir / f"{path.stem}_{digest[:16]}.py"
    if script.is_file():
        return script
    with _compile_lock, preserved_sys_path():  # Builder prepends its components folder
        alerts: list[dict[str, Any]] = []
        code = builder_script(path, alerts)
        alerts_file(script).write_text(json.dumps(alerts, default=str), encoding="utf-8")
        tmp = script.with_suffix(".tmp")
        tmp.write_text(code, encoding="utf-8")
        tmp.replace(script)
    for stale in cache_dir.glob(f"{path.stem}_*.py"):
        if stale != script:
            stale.unlink(missing_ok=True)
            alerts_file(stale).unlink(missing_ok=True)
    return script


def alerts_file(script: Path) -> Path:
    """Where the compiler's alerts for a cached script are kept (JSON list)."""
    return script.with_name(script.stem + ".alerts.json")


def compile_alerts(script: Path | None) -> list[dict[str, Any]]:
    """The alerts recorded when ``script`` was compiled (empty if none or unknown)."""
    if script is None:
        return []
    try:
        return json.loads(alerts_file(script).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []


def builder_script(path: Path, alerts: list | None = None) -> str:
    """Builder's Python script for ``path``; see :func:`compile_builder`."""
    return compile_builder(path, alerts)[0]


def compile_builder(path: Path, alerts: list | None = None) -> tuple[str, Any]:
    """Builder's script for ``path`` and the loaded ``psychopy.experiment.Experiment``.

    The compiler's alerts (e.g. 7105, a component from a plugin that is not
    installed) are appended to ``alerts`` as dicts ``{code, msg, name, type}``
    instead of going to stderr, where nobody watching a server would see
    them. Caller holds :data:`_compile_lock` and restores ``sys.path``.
    """
    from psychopy import experiment as builder  # heavy: import only when compiling
    from psychopy.alerts import _alerts

    class Collector(_alerts.BaseAlertHandler):
        def receiveAlert(self, msg):  # noqa: N802 - PsychoPy's name
            if alerts is not None:
                alerts.append({"code": msg.code, "msg": msg.msg, "name": msg.name, "type": msg.type})

    collector = Collector()
    _alerts.addAlertHandler(collector)
    exp = builder.Experiment()
    try:
        exp.loadFromXML(str(path))
        exp.settings.params["Use version"].val = ""
        return exp.writeScript(target="PsychoPy"), exp
    except Exception as exc:  # Builder raises many kinds of errors
        raise ExperimentError(f"could not compile {path.name}: {exc}") from exc
    finally:
        _alerts.removeAlertHandler(collector)


def module_name(experiment: Experiment) -> str:
    """The private name an experiment's script is imported under (never an installed package's)."""
    return "liaison_experiment_" + hashlib.sha1(str(experiment.path).encode()).hexdigest()[:12]


def load_module(experiment: Experiment, cache_dir: Path, root: Path | None = None) -> ModuleType:
    """Import the experiment's script under a private name; recompile only if it changed.

    The import runs in the experiment's folder with that folder first on
    ``sys.path`` (see :mod:`session.isolation`); modules it imports from
    under ``root`` (default: its folder) are forgotten afterwards unless a
    surrounding scope (a run) still needs them.
    """
    script = compile_psyexp(experiment.path, cache_dir) if experiment.kind == "psyexp" else experiment.path
    digest = file_digest(script)
    if experiment.module is not None and digest == experiment.digest:
        return experiment.module
    folder = str(experiment.path.parent)
    name = module_name(experiment)
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise ExperimentError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with experiment_scope(folder, root or folder, keep=frozenset({name})):
            spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ExperimentError(f"importing {experiment.path.name} failed: {type(exc).__name__}: {exc}") from exc
    except SystemExit as exc:  # a script that calls sys.exit()/core.quit() at import time
        sys.modules.pop(name, None)
        raise ExperimentError(f"importing {experiment.path.name} failed: it called sys.exit({exc.code!r})") from exc
    missing = [fn for fn in BUILDER_FUNCTIONS if not callable(getattr(module, fn, None))]
    if missing:
        raise ExperimentError(f"{experiment.path.name} lacks {', '.join(missing)}")
    # Builder chdirs to _thisDir and opens conditions files relative to it.
    module._thisDir = folder
    experiment.module, experiment.script, experiment.digest = module, script, digest
    return module


def defaults_from_module(module: ModuleType) -> dict[str, Any]:
    """A fresh copy of the module's expInfo with Builder's ``|`` flags removed."""
    raw = getattr(module, "expInfo", None) or {}
    return {strip_pipe(k): v for k, v in dict(raw).items()}
