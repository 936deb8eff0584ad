"""Plugins: classes registered in the entry-point group ``liaison.plugins``.

Enable one per server with ``liaison serve --plugin NAME[:options]`` (or
``ServerConfig(plugins=[...])``), e.g. ``--plugin lsl:name=EEG-rig,data=true``.
A plugin is a :class:`~liaison.plugins.base.Plugin` (its hooks run in the
server process, off the event loop) that may name an
:class:`session.plugins.EnginePlugin` (frame-exact hooks in the worker, on
the experiment's thread). See docs/plugins.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from session.plugins import import_object

from .base import Plugin

GROUP = "liaison.plugins"
# Plugins that ship with Liaison, for a checkout whose installed metadata predates them;
# pyproject.toml registers the same names in GROUP (a unit test keeps the two equal).
BUILTIN = {"lsl": "liaison.plugins.lsl:LslPlugin"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

__all__ = ["BUILTIN", "GROUP", "Plugin", "PluginNotFound", "PluginSpec", "available", "parse_spec", "resolve"]


class PluginNotFound(ValueError):
    """No plugin of that name is installed (the message lists those that are)."""


@dataclass(frozen=True)
class PluginSpec:
    """A plugin to enable: its registered name and its options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        opts = ",".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in self.options.items())
        return f"{self.name}:{opts}" if opts else self.name


def parse_spec(text: str | PluginSpec | dict) -> PluginSpec:
    """``"NAME"`` or ``"NAME:key=value,key=value"`` (values: JSON if they parse, else text).

    Also accepts a PluginSpec or ``{"name": ..., "options": {...}}`` (a config
    file's form). Raises ValueError naming what is wrong.
    """
    if isinstance(text, PluginSpec):
        return text
    if isinstance(text, dict):
        name, options = text.get("name"), text.get("options") or {}
        if not isinstance(name, str) or not isinstance(options, dict):
            raise ValueError(f"plugin entry {text!r} needs a 'name' (text) and optional 'options' (object)")
        return PluginSpec(_checked_name(name), dict(options))
    if not isinstance(text, str):
        raise ValueError(f"plugin {text!r} must be text like NAME or NAME:key=value")
    name, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"plugin option {pair!r} in {text!r} must look like key=value")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return PluginSpec(_checked_name(name.strip()), options)


def _checked_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"plugin name {name!r} must be letters, digits, '.', '_' or '-'")
    return name


def available() -> dict[str, str]:
    """Installed plugins: name -> ``"module:attr"`` (entry points first, then the built-in ones)."""
    found = dict(BUILTIN)
    for entry in metadata.entry_points(group=GROUP):
        found[entry.name] = entry.value
    return found


def resolve(name: str) -> type[Plugin]:
    """The plugin class registered as ``name``; PluginNotFound / TypeError / ImportError say why not."""
    installed = available()
    path = installed.get(name)
    if path is None:
        known = ", ".join(sorted(installed)) or "none"
        raise PluginNotFound(f"no plugin named {name!r} (installed: {known})")
    cls = import_object(path)
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise TypeError(f"plugin {name!r} ({path}) is not a liaison.plugins.Plugin subclass")
    return cls
