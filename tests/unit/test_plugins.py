"""The plugin registry, specs and budget records (no window, no socket)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liaison.cli import app
from liaison.plugins import BUILTIN, GROUP, PluginNotFound, PluginSpec, available, parse_spec, resolve
from liaison.plugins.host import PluginLoadError, ServerPlugins
from session.experiments import discover
from session.plugins import HookBudget, PluginHost, import_object

PROJECT = Path(__file__).resolve().parent.parent.parent


def test_specs_parse_names_and_typed_options():
    assert parse_spec("lsl") == PluginSpec("lsl", {})
    assert parse_spec("lsl:name=EEG rig,data=true,n=3,x=1.5") == PluginSpec(
        "lsl", {"name": "EEG rig", "data": True, "n": 3, "x": 1.5})
    assert parse_spec({"name": "lsl", "options": {"data": True}}) == PluginSpec("lsl", {"data": True})
    assert parse_spec("lsl:source_id=\"quoted\"").options == {"source_id": "quoted"}


@pytest.mark.parametrize("bad, says", [
    ("", "plugin name"), ("../x", "plugin name"), ("lsl:data", "key=value"), ("lsl:=1", "key=value"),
    ({"options": {}}, "needs a 'name'"), (3, "must be text"),
])
def test_bad_specs_say_what_is_wrong(bad, says):
    with pytest.raises(ValueError, match=says):
        parse_spec(bad)


def test_the_projects_entry_points_are_the_builtin_plugins():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"][GROUP] == BUILTIN
    assert {"pylsl"} <= {r.split(">")[0] for r in project["project"]["optional-dependencies"]["lsl"]}
    assert any(r.startswith("pylsl") for r in project["project"]["optional-dependencies"]["test"])
    assert available()["lsl"] == BUILTIN["lsl"]


def test_an_unknown_plugin_is_refused_listing_the_installed_ones():
    with pytest.raises(PluginNotFound, match=r"no plugin named 'nope' \(installed: .*lsl"):
        resolve("nope")
    with pytest.raises(PluginLoadError, match="nope"):
        ServerPlugins.from_specs(["nope"], publish=print)


def test_plugins_found_through_an_installed_distributions_entry_points(tmp_path, monkeypatch):
    dist = tmp_path / "demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\nhello = liaison_hello.plugin:HelloPlugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(PROJECT / "examples" / "plugins"))
    plugins = ServerPlugins.from_specs(["hello:greeting=Hi"], publish=print)
    assert plugins.engine_specs() == (("hello", "liaison_hello.plugin:HelloFrames", {"greeting": "Hi"}),)
    with pytest.raises(PluginLoadError, match="unknown option.*colour.*known: greeting"):
        ServerPlugins.from_specs(["hello:colour=red"], publish=print)
    with pytest.raises(PluginLoadError, match="enabled twice"):
        ServerPlugins.from_specs(["hello", "hello"], publish=print)


def test_lsl_options_are_checked_before_anything_starts():
    with pytest.raises(PluginLoadError, match="unknown option.*colour"):
        ServerPlugins.from_specs(["lsl:colour=red"], publish=print)
    with pytest.raises(PluginLoadError, match="data must be true or false"):
        ServerPlugins.from_specs(["lsl:data=yes"], publish=print)
    plugins = ServerPlugins.from_specs(["lsl:name=rig"], publish=print)
    assert plugins.engine_specs() == (("lsl", "liaison.plugins.lsl:LslMarkers", {"name": "rig"}),)


def test_serve_with_an_unknown_plugin_exits_2_naming_it(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--plugin", "nope", "--no-auth"])
    assert result.exit_code == 2
    assert "no plugin named 'nope'" in result.output
    assert not (tmp_path / "data").exists(), "nothing was created for a server that could not start"


def test_a_plugin_folder_under_the_session_root_is_not_an_experiment():
    keys = {e.key for e in discover(PROJECT / "examples")}
    assert keys == {"rt_demo", "stroop_lite"}


def test_an_engine_plugin_that_cannot_load_is_reported_not_fatal(monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT / "examples" / "plugins"))
    errors = []
    host = PluginHost.load([("broken", "no_such_module_here:Plugin", {}),
                            ("hello", "liaison_hello.plugin:HelloFrames", {})], errors.append)
    assert [name for name, _ in host.plugins] == ["hello"]
    assert len(errors) == 1 and errors[0].plugin == "broken" and errors[0].hook == "load"
    assert "ModuleNotFoundError" in errors[0].error
    with pytest.raises(ValueError, match="must look like"):
        import_object("no_colon")


def test_the_budget_record_counts_calls_over_budget_by_hook():
    budget = HookBudget(budget=0.001)
    for seconds in (0.0002, 0.003, 0.0005, 0.002):
        budget.record("trial_started" if seconds > 0.001 else "routine_started", seconds)
    record = budget.to_dict()
    assert record["calls"] == 4 and record["over_budget"] == 2
    assert record["over_by_hook"] == {"trial_started": 2}
    assert record["max_ms"] == 3.0 and record["slowest_hook"] == "trial_started" and record["budget_ms"] == 1.0


def test_a_session_without_plugins_changes_nothing():
    host = PluginHost()
    assert not host and host.run_ended(run_id="r", key="k", outcome="completed", rows=0, duration=0,
                                       error=None) == {}


def test_the_server_process_does_not_import_psychopy_for_plugins():
    """The server speaks WebSocket only: the plugin registry and the lsl plugin's server half keep it light."""
    import subprocess
    import sys

    code = ("import sys, liaison.server.app, liaison.cli, liaison.plugins.lsl, liaison.plugins.host; "
            "print('psychopy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=PROJECT, env={**__import__("os").environ, "PYTHONPATH": str(PROJECT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


class Recording:
    """A server-half plugin that records its calls (a real Plugin subclass, run by the real runner)."""

    def __new__(cls, queue_limit=10_000, fail_on=None):
        from liaison.plugins.base import Plugin

        class RecordingPlugin(Plugin):
            def __init__(self, options):
                super().__init__(options)
                self.calls = []
                self.queue_limit = queue_limit

            def session_started(self, info):
                self.calls.append(("session_started", info.port))

            def session_stopping(self):
                self.calls.append(("session_stopping",))

            def run_started(self, event, manifest):
                self.calls.append(("run_started", event.run_id, manifest))

            def annotated(self, event):
                if fail_on == "annotated":
                    raise RuntimeError("cannot annotate")
                self.calls.append(("annotated", event.text))

            def event(self, event):
                self.calls.append(("event", event.type))

        return RecordingPlugin({})


def session_info(port=1234):
    from liaison.plugins.base import SessionInfo

    return SessionInfo(root="/r", data_dir="/d", version="0", session_id="s", host="127.0.0.1", port=port)


def test_server_hooks_run_in_event_order_after_session_started_even_for_early_events(tmp_path):
    from session.events import Annotated, RunStarted

    plugin = Recording()
    published = []
    plugins = ServerPlugins([(PluginSpec("rec"), plugin)], published.append)
    plugins.on_event(Annotated(run_id=None, text="before the port was known"))
    plugins.start(session_info())
    plugins.on_event(RunStarted(run_id="r1", key="k", exp_info={}, data_dir=str(tmp_path)))
    plugins.close()
    assert plugin.calls == [("session_started", 1234), ("annotated", "before the port was known"),
                            ("event", "annotation"), ("run_started", "r1", None), ("event", "run_started"),
                            ("session_stopping",)]
    assert published == []


def test_a_raising_server_hook_becomes_a_plugin_error_and_the_plugin_goes_on():
    from session.events import Annotated

    plugin = Recording(fail_on="annotated")
    published = []
    plugins = ServerPlugins([(PluginSpec("rec"), plugin)], published.append)
    plugins.start(session_info())
    plugins.on_event(Annotated(run_id="r1", text="x"))
    plugins.close()
    assert [(e.type, e.plugin, e.hook, e.where, e.run_id) for e in published] == [
        ("plugin_error", "rec", "annotated", "server", "r1")]
    assert "RuntimeError: cannot annotate" in published[0].error
    assert ("event", "annotation") in plugin.calls and plugin.calls[-1] == ("session_stopping",)


def test_a_plugin_that_falls_behind_loses_events_for_itself_only_and_is_told():
    from session.events import Annotated

    plugin = Recording(queue_limit=3)
    published = []
    plugins = ServerPlugins([(PluginSpec("rec"), plugin)], published.append)
    for i in range(5):  # not started yet: nothing is consumed, so the bounded queue overflows
        plugins.on_event(Annotated(run_id=None, text=str(i)))
    plugins.start(session_info())
    plugins.close()
    assert any(e.hook == "queue" and "events were dropped" in e.error for e in published)
    assert plugin.calls[0] == ("session_started", 1234)
