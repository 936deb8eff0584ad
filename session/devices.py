"""Devices the session holds for its experiments, through PsychoPy's DeviceManager."""

from __future__ import annotations


def session_device_names() -> set[str]:
    """Names of the devices PsychoPy's DeviceManager holds in this process now."""
    try:
        from psychopy.hardware import DeviceManager
    except Exception:  # noqa: BLE001 - no psychopy.hardware: no devices
        return set()
    return set(getattr(DeviceManager, "devices", {}) or {})
