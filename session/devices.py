"""Devices the session sets up for its experiments, through PsychoPy's DeviceManager.

Builder experiments can name a device ("device name" fields: a button box,
a light sensor, a named keyboard) that must exist before they run, as
PsychoPy's Session and Studio's device dialog provide. :class:`SessionDevices`
adds such devices from parameters under a name, removes them, lists them
and what the machine offers (``DeviceManager.getAvailableDevices``), and can
run an experiment's ``setupDevices`` once. What was set up is kept in
``DATA/devices.json`` and re-created when a worker starts, so devices
persist across runs, worker restarts and server restarts.

Only PsychoPy's own device classes (``psychopy.*``, plugins'
``psychopy_*.*``, or a registered alias such as ``keyboard``) that subclass
``BaseDevice`` can be created, with JSON parameters: naming a class is not a
way to run arbitrary code.

Every session device gets a listener that publishes its responses as
``hardware_response`` events, stamped with the session clock. Devices are
polled by whoever reads them (the running experiment); the listener only
relays, so it costs the frame loop one event per response.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, Callable

from .errors import Busy, NotFound, SessionError
from .events import HardwareResponse
from .names import is_valid_key
from .records import write_atomic

STORE_FILE = "devices.json"
DEVICE_CLASS = re.compile(r"(psychopy|psychopy_[a-z0-9_]+)(\.[A-Za-z_]\w*)+(:[A-Za-z_][\w.]*)?")


class DeviceError(SessionError):
    """A device could not be created, found or used; the message is the device's own."""

    code = "device_error"


def session_device_names() -> set[str]:
    """Names of the devices PsychoPy's DeviceManager holds in this process now."""
    try:
        from psychopy.hardware import DeviceManager
    except Exception:  # noqa: BLE001 - no psychopy.hardware: no devices
        return set()
    return set(getattr(DeviceManager, "devices", {}) or {})


def psychopy_device_errors() -> tuple[type[BaseException], ...]:
    """PsychoPy's device exceptions, which derive from BaseException (``except Exception`` misses them)."""
    try:
        from psychopy.hardware import exceptions
    except Exception:  # noqa: BLE001
        return ()
    return tuple(cls for cls in (getattr(exceptions, "DeviceNotConnectedError", None),
                                 getattr(exceptions, "ManagedDeviceError", None)) if isinstance(cls, type))


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of a response field (numpy arrays become lists, the rest their repr)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if depth < 4 and isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    if depth < 4 and isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return jsonable(value.tolist(), depth + 1)
    return repr(value)


def resolve_device_class(device_class: str):
    """The BaseDevice subclass ``device_class`` names, or :class:`DeviceError` saying why not."""
    from psychopy.hardware import DeviceManager
    from psychopy.hardware.base import BaseDevice

    resolved = DeviceManager._resolveAlias(device_class)
    if not isinstance(resolved, str) or not DEVICE_CLASS.fullmatch(resolved):
        raise DeviceError(f"device class {device_class!r} is not a PsychoPy device class "
                          "(psychopy.hardware..., a psychopy_ plugin's, or an alias such as 'keyboard')")
    try:
        cls = DeviceManager._resolveClassString(resolved)
    except Exception as exc:  # noqa: BLE001 - ModuleNotFoundError, AttributeError
        raise DeviceError(f"device class {device_class!r} cannot be loaded: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseDevice)):
        raise DeviceError(f"{device_class!r} is not a device class (not a BaseDevice)")
    return cls, resolved


class SessionDevices:
    """The session's devices; thread-safe bookkeeping, device creation on the caller's thread."""

    def __init__(self, data_dir: Path, publish: Callable, session_time: Callable[[], float],
                 current_run: Callable[[], str | None] = lambda: None) -> None:
        self.store = Path(data_dir) / STORE_FILE
        self._publish = publish
        self._time = session_time
        self._current_run = current_run
        self._lock = threading.Lock()
        self._specs: dict[str, dict[str, Any]] = {}  # name -> {"device_class", "params"} or {"experiment"}
        self._errors: dict[str, str] = {}
        self._listeners: dict[str, Any] = {}  # name -> our listener on that device

    # --- persistence ---------------------------------------------------------------
    def _save(self) -> None:
        write_atomic(self.store, json.dumps(list(self._specs.values()), indent=2, default=str) + "\n")

    def stored(self) -> list[dict[str, Any]]:
        """The device specs saved in the data folder (empty if none or unreadable)."""
        try:
            specs = json.loads(self.store.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [s for s in specs if isinstance(s, dict) and isinstance(s.get("name"), str)]

    def restore(self, setup_from: Callable[[str], Any] | None = None) -> dict[str, str]:
        """Re-create the devices ``devices.json`` lists; returns name -> error for those that failed."""
        failed: dict[str, str] = {}
        for spec in self.stored():
            try:
                if "experiment" in spec:
                    with self._lock:
                        self._specs[spec["name"]] = spec
                    if setup_from is not None:
                        setup_from(spec["experiment"])
                else:
                    self.add(spec["name"], spec["device_class"], spec.get("params") or {}, save=False)
            except Exception as exc:  # noqa: BLE001 - keep it listed, with why it is not ready
                failed[spec["name"]] = str(exc)
                with self._lock:
                    self._specs.setdefault(spec["name"], spec)
                    self._errors[spec["name"]] = str(exc)
        return failed

    # --- changes ---------------------------------------------------------------------
    def add(self, name: str, device_class: str, params: dict[str, Any] | None = None, *,
            save: bool = True) -> dict[str, Any]:
        """Create a device with ``params`` under ``name`` (replacing one of ours by that name)."""
        from psychopy.hardware import DeviceManager

        if not is_valid_key(name):
            raise DeviceError(f"invalid device name {name!r}: letters, digits, '_', '.' and '-' only")
        params = dict(params or {})
        for reserved in ("deviceName", "deviceClass"):
            params.pop(reserved, None)
        _cls, resolved = resolve_device_class(device_class)
        if name in DeviceManager.devices:
            if name not in self._specs:
                raise DeviceError(f"a device named {name!r} already exists (set up by an experiment)")
            DeviceManager.removeDevice(name)
        try:
            device = DeviceManager.addDevice(resolved, name, **params)
        except (Exception, *psychopy_device_errors()) as exc:  # noqa: BLE001 - TypeError, driver errors...
            raise DeviceError(f"could not add device {name!r} ({device_class}): "
                              f"{getattr(exc, 'msg', None) or exc}") from None
        self._listen(name, device)
        with self._lock:
            self._specs[name] = {"name": name, "device_class": resolved, "params": params}
            self._errors.pop(name, None)
            if save:
                self._save()
        return self.describe_one(name)

    def remove(self, name: str) -> bool:
        """Close and forget device ``name`` (main thread, between runs); True if it existed."""
        from psychopy.hardware import DeviceManager

        with self._lock:
            if name not in self._specs:
                raise NotFound(f"no session device named {name!r}")
        if name in DeviceManager.devices:
            try:
                DeviceManager.removeDevice(name)
            except Exception as exc:  # noqa: BLE001
                raise DeviceError(f"could not remove device {name!r}: {exc}") from None
        with self._lock:
            self._specs.pop(name, None)
            self._errors.pop(name, None)
            self._listeners.pop(name, None)
            self._save()
        return True

    def setup_from_experiment(self, key: str, module, win, work_dir: Path) -> list[str]:
        """Run the experiment's ``setupDevices`` once; the devices it makes become session devices.

        PsychoPy's own ``setupDevicesFromExperiment`` crashes without an
        ExperimentHandler (Builder reads ``thisExp.dataFileName`` for ioHub),
        so a throw-away one that never saves is passed.
        """
        from psychopy import data
        from psychopy.hardware import DeviceManager

        setup = getattr(module, "setupDevices", None)
        if not callable(setup):
            raise DeviceError(f"experiment {key!r} has no setupDevices()")
        exp_info = {k.split("|")[0]: v for k, v in dict(getattr(module, "expInfo", {}) or {}).items()}
        work_dir.mkdir(parents=True, exist_ok=True)
        handler = data.ExperimentHandler(name=key, extraInfo=exp_info, savePickle=False, saveWideText=False,
                                         dataFileName=str(work_dir / f"setup_devices_{key}"))
        before = set(DeviceManager.devices)
        try:
            setup(expInfo=exp_info, thisExp=handler, win=win)
        except (Exception, *psychopy_device_errors()) as exc:  # noqa: BLE001 - the device's own message is what the user needs
            raise DeviceError(f"setupDevices of {key!r} failed: {type(exc).__name__}: {exc}") from None
        finally:
            handler.abort()
        added = sorted(set(DeviceManager.devices) - before)
        with self._lock:
            for name in added:
                self._specs[name] = {"name": name, "experiment": key}
            self._save()
        for name in added:
            self._listen(name, DeviceManager.devices[name])
        return added

    # --- reading -----------------------------------------------------------------------
    def names(self) -> set[str]:
        """Names of every device PsychoPy's DeviceManager holds now."""
        return session_device_names()

    def describe_one(self, name: str) -> dict[str, Any]:
        """One device's name, class, params or owner experiment, ready and last error."""
        from psychopy.hardware import DeviceManager

        with self._lock:
            spec = dict(self._specs.get(name) or {"name": name})
            error = self._errors.get(name)
        device = DeviceManager.devices.get(name)
        return {**spec, "ready": device is not None, "class": type(device).__name__ if device else None,
                "error": error}

    def describe(self) -> list[dict[str, Any]]:
        """Every session device, as :meth:`describe_one`."""
        with self._lock:
            names = list(self._specs)
        return [self.describe_one(n) for n in names]

    @staticmethod
    def available(device_class: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """What the machine offers, by device class (``DeviceManager.getAvailableDevices``)."""
        from psychopy.hardware import DeviceManager

        if device_class is not None:
            _cls, resolved = resolve_device_class(device_class)
            try:
                return {resolved: jsonable(DeviceManager.getAvailableDevices(resolved))}
            except Exception as exc:  # noqa: BLE001
                raise DeviceError(f"could not list {device_class} devices: {exc}") from None
        found: dict[str, list[dict[str, Any]]] = {}
        DeviceManager.importAllComponentDeviceClasses()
        for cls in list(DeviceManager.deviceClasses):
            name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
            try:
                found[name] = jsonable(DeviceManager.getAvailableDevices(name))
            except Exception:  # noqa: BLE001 - NotImplementedError, a driver missing: nothing of that class
                continue
        return found

    # --- streaming ---------------------------------------------------------------------
    def _listen(self, name: str, device) -> None:
        if not hasattr(device, "listeners"):
            return
        from psychopy.hardware.listener import BaseListener

        devices = self

        class SessionListener(BaseListener):
            """Relays a device's responses as hardware_response events."""

            def receiveMessage(self, message):  # noqa: N802 - PsychoPy's name
                devices.relay(name, message)

        self._listeners[name] = SessionListener()
        self.ensure_listeners()

    def ensure_listeners(self) -> None:
        """Put our listeners back where PsychoPy dropped them (cheap: call it at every trial).

        ``KeyboardDevice`` is a singleton whose ``__init__`` runs again for
        every keyboard an experiment creates, emptying its listener list; a
        device known under several names gets one listener, the first name's.
        """
        from psychopy.hardware import DeviceManager

        attached: set[int] = set()
        for name, listener in list(self._listeners.items()):
            device = DeviceManager.devices.get(name)
            listeners = getattr(device, "listeners", None)
            if listeners is None or id(device) in attached:
                continue
            attached.add(id(device))
            if listener not in listeners:
                listeners.append(listener)  # not addListener(): that would poll the device now

    def relay(self, name: str, message: Any) -> None:
        """Publish one response (any thread; a dict construction and a queue put)."""
        fields = getattr(message, "fields", None) or ["t", "value"]
        data = {f: jsonable(getattr(message, f, None)) for f in fields}
        for extra in ("name", "code", "channel"):
            if hasattr(message, extra) and extra not in data:
                data[extra] = jsonable(getattr(message, extra))
        t = getattr(message, "t", None)
        self._publish(HardwareResponse(
            device=name, response=type(message).__name__, data=data,
            t=float(t) if isinstance(t, (int, float)) else None, session_time=self._time(),
            run_id=self._current_run(),
        ))


def require_between_runs(active: bool, what: str) -> None:
    """Raise Busy (naming ``what``) when a run is in progress."""
    if active:
        raise Busy(f"cannot {what} while an experiment runs; try again between runs")
