"""The server's parts and the clients' core in milliseconds: a fake worker and an in-memory socket.

The end-to-end tier runs the same paths against a real worker, window and
loopback WebSocket; these pin down each part's contract on its own.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from liaison.protocol import ErrorCode, ProtocolError
from liaison.protocol.client import ClientCore, Event, Refused, Reply, Welcome
from liaison.server.auth import Credentials
from liaison.server.clients import ClientRegistry
from liaison.server.commandlog import CommandLog
from liaison.server.connection import ClientConnection, Limits
from liaison.server.dispatch import Dispatcher
from liaison.server.hub import Hub
from liaison.store.journal import Journal
from liaison.store.runs import RunHistory
from session.events import Annotated, Publisher

TOKEN, OBSERVER = "unit-controller-token", "unit-observer-token"


class MemorySocket:
    """One end of an in-memory WebSocket with the parts of websockets' API the server uses."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.peer: MemorySocket | None = None
        self.close_code: int | None = None
        self.sent_sizes: list[int] = []

    @classmethod
    def pair(cls) -> tuple[MemorySocket, MemorySocket]:
        a, b = cls(), cls()
        a.peer, b.peer = b, a
        return a, b

    async def send(self, text: str) -> None:
        if self.close_code is not None:
            raise ConnectionClosed(Close(self.close_code, ""), None)
        self.sent_sizes.append(len(text))
        await self.peer.inbox.put(text)

    async def recv(self) -> str:
        item = await self.inbox.get()
        if isinstance(item, Close):
            self.close_code = item.code
            raise ConnectionClosed(item, None)
        return item

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code
            await self.peer.inbox.put(Close(code, reason))
            await self.inbox.put(Close(code, reason))


class FakeLink:
    """Stands in for the session worker: canned answers, a record of what was asked."""

    restarts = 0

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.held: list[asyncio.Future] = []
        self.hold = False

    def call(self, method: str, timeout: float = 30.0, **kwargs: Any):
        self.calls.append((method, kwargs))
        if self.hold:
            future = asyncio.get_running_loop().create_future()
            self.held.append(future)
            return future
        return self._answer(method, kwargs)

    async def _answer(self, method: str, kwargs: dict) -> Any:
        if method == "state":
            return {"status": "idle", "run_id": None, "experiments": []}
        if method == "start_run":
            return {"run_id": "r1", "key": kwargs["key"]}
        if method == "pause":
            raise ProtocolError(ErrorCode.CONFLICT, "nothing is running")
        return {"method": method}

    async def abort(self, grace: float) -> dict:
        return {"run_id": "r1", "killed": False}

    async def add_experiment(self, path: str, key: str | None) -> dict:
        return {"key": key or path, "path": path, "kind": "py"}


@pytest.fixture
def parts(tmp_path):
    """A hub, dispatcher and command log around a fake worker, on a fresh event loop."""
    loop = asyncio.new_event_loop()
    journal = Journal.in_dir(tmp_path)
    hub = Hub(loop, journal=journal)
    link = FakeLink()
    clients = ClientRegistry()
    dispatcher = Dispatcher(link, hub, RunHistory(journal), clients, {"version": "test", "session_id": "s"},
                            max_reply_bytes=10_000)
    commands = CommandLog(journal, loop)
    yield {"loop": loop, "journal": journal, "hub": hub, "link": link, "clients": clients,
           "dispatcher": dispatcher, "commands": commands}
    loop.close()
    journal.close()


def connection(parts, limits: Limits | None = None) -> tuple[ClientConnection, MemorySocket]:
    server_end, client_end = MemorySocket.pair()
    conn = ClientConnection(server_end, credentials=Credentials(TOKEN, OBSERVER), hub=parts["hub"],
                            dispatcher=parts["dispatcher"], commands=parts["commands"], clients=parts["clients"],
                            hello='{"v":1,"type":"hello"}', limits=limits or Limits(auth_timeout=2.0))
    return conn, client_end


async def handshake(client_end: MemorySocket, token: str | None = TOKEN, role: str = "controller") -> dict:
    assert json.loads(await client_end.recv())["type"] == "hello"
    await client_end.send(json.dumps({"v": 1, "type": "auth", "token": token, "role": role}))
    return json.loads(await client_end.recv())


async def reply_to(client_end: MemorySocket, request_id: Any) -> dict:
    while True:
        data = json.loads(await asyncio.wait_for(client_end.recv(), 5))
        for message in data if isinstance(data, list) else [data]:
            if message.get("type") == "reply" and message.get("id") == request_id:
                return message


def request(cmd: str, request_id: Any, **args: Any) -> str:
    return json.dumps({"v": 1, "type": "request", "id": request_id, "cmd": cmd, "args": args})


def test_handshake_requests_and_typed_errors(parts):
    async def scenario():
        conn, client = connection(parts)
        serving = asyncio.create_task(conn.serve())
        welcome = await handshake(client)
        assert welcome["type"] == "welcome" and welcome["role"] == "controller"
        assert welcome["state"]["server"]["clients"] == 1, "the connection is counted once it is in"
        await client.send(request("run", 1, key="demo"))
        assert (await reply_to(client, 1))["result"] == {"run_id": "r1", "key": "demo"}
        await client.send(request("pause", 2))
        assert (await reply_to(client, 2))["error"]["code"] == "conflict"
        await client.send("{not json")
        assert (await reply_to(client, None))["error"]["code"] == "invalid_json"
        await client.send(request("ping", 3))
        assert (await reply_to(client, 3))["ok"], "a bad message never ends the connection"
        await client.close()
        await serving
        assert parts["clients"].list() == []

    parts["loop"].run_until_complete(scenario())
    assert ("start_run", {"key": "demo", "exp_info": {}, "seed": None, "simulate": None}) in parts["link"].calls


@pytest.mark.parametrize("token, role, code", [("wrong", "controller", 4001), (None, "observer", 4001),
                                               (OBSERVER, "controller", 4001)])
def test_refused_tokens_close_with_4001(parts, token, role, code):
    async def scenario():
        conn, client = connection(parts)
        serving = asyncio.create_task(conn.serve())
        answer = await handshake(client, token, role)
        assert answer["type"] == "reply" and answer["error"]["code"] == "unauthorized"
        goodbye = json.loads(await client.recv())
        assert goodbye["type"] == "goodbye" and goodbye["code"] == code
        await serving

    parts["loop"].run_until_complete(scenario())


def test_no_auth_in_time_closes_with_4002(parts):
    async def scenario():
        conn, client = connection(parts, Limits(auth_timeout=0.05))
        serving = asyncio.create_task(conn.serve())
        assert json.loads(await client.recv())["type"] == "hello"
        goodbye = json.loads(await client.recv())
        assert goodbye["code"] == 4002
        await serving
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.close_code == 4002

    parts["loop"].run_until_complete(scenario())


def test_observers_are_refused_and_their_payload_is_not_journalled(parts):
    async def scenario():
        conn, client = connection(parts)
        serving = asyncio.create_task(conn.serve())
        assert (await handshake(client, OBSERVER, "observer"))["role"] == "observer"
        await client.send(request("add_data", 7, name="x", value="y" * 50_000))
        assert (await reply_to(client, 7))["error"]["code"] == "forbidden"
        await client.close()
        await serving

    parts["loop"].run_until_complete(scenario())
    parts["commands"].flush()
    row = parts["journal"].commands(10)[-1]
    assert row["cmd"] == "add_data" and "y" * 100 not in json.dumps(row) and "forbidden" in json.dumps(row)
    assert not any(method == "add_data" for method, _ in parts["link"].calls)


def test_requests_beyond_the_in_flight_bound_are_busy(parts):
    parts["link"].hold = True

    async def scenario():
        conn, client = connection(parts, Limits(max_in_flight=2))
        parts["link"].hold = False
        serving = asyncio.create_task(conn.serve())
        await handshake(client)
        parts["link"].hold = True
        for i in range(3):
            await client.send(request("get_exp_info", i))
        assert (await reply_to(client, 2))["error"]["code"] == "busy"
        parts["link"].held[0].set_result({"participant": "p"})
        assert (await reply_to(client, 0))["result"] == {"participant": "p"}
        await client.send(request("get_exp_info", 3))  # one slot is free again
        await asyncio.sleep(0)
        assert len(parts["link"].held) == 3
        await client.close()
        await serving

    parts["loop"].run_until_complete(scenario())


def test_a_client_that_does_not_read_is_cut_by_bytes(parts):
    async def scenario():
        conn, client = connection(parts, Limits(client_buffer_bytes=20_000))
        serving = asyncio.create_task(conn.serve())
        await handshake(client)
        publisher = Publisher(first_seq=1)
        for _ in range(40):  # 40 kB of events, none of them read
            parts["hub"].dispatch(publisher.publish(Annotated(run_id=None, text="a" * 1000)))
        await asyncio.sleep(0)
        received = []
        while True:
            item = await asyncio.wait_for(client.inbox.get(), 5)
            if isinstance(item, Close):
                break
            received.append(json.loads(item))
        goodbye = [m for m in received if isinstance(m, dict) and m.get("type") == "goodbye"]
        assert goodbye and goodbye[0]["code"] == 4008 and "bytes" in goodbye[0]["reason"]
        await serving

    parts["loop"].run_until_complete(scenario())


def test_replies_overtake_queued_events(parts):
    async def scenario():
        conn, client = connection(parts)
        serving = asyncio.create_task(conn.serve())
        await handshake(client)
        publisher = Publisher(first_seq=1)
        for _ in range(1200):  # more than one frame's worth of backlog ...
            parts["hub"].dispatch(publisher.publish(Annotated(run_id=None, text="queued")))
        conn.queue_reply('{"v":1,"type":"reply","id":"x","ok":true,"result":null,"error":null}')  # ... then a reply
        first = json.loads(await client.recv())
        assert isinstance(first, dict) and first["type"] == "reply", "the reply goes before the backlog"
        seqs = []
        while len(seqs) < 1200:
            data = json.loads(await client.recv())
            seqs += [m["seq"] for m in (data if isinstance(data, list) else [data])]
        assert seqs == list(range(1, 1201)), "and the events follow, all of them, in order"
        await client.close()
        await serving

    parts["loop"].run_until_complete(scenario())


def test_dispatch_refuses_runs_while_storage_fails_and_pages_replays(parts):
    hub, dispatcher = parts["hub"], parts["dispatcher"]
    publisher = Publisher(first_seq=1)
    for _ in range(30):
        hub.dispatch(publisher.publish(Annotated(run_id=None, text="x" * 1000)))

    class Caller:
        client_id, role, name = "c", "controller", None
        subscriber = type("S", (), {"topics": {"all"}})()

    from liaison.protocol import reply_text

    page = json.loads(reply_text(1, dispatcher.start(Caller, "replay", {"since": 0})))["result"]
    assert page["more"] and 1 <= len(page["events"]) < 30 and page["next_since"] == page["events"][-1]["seq"]
    hub.storage_error = "OperationalError: database or disk is full"
    with pytest.raises(ProtocolError) as refused:
        dispatcher.start(Caller, "run", {"key": "demo"})
    assert refused.value.code == ErrorCode.STORAGE_UNAVAILABLE
    with pytest.raises(ProtocolError) as unknown:
        dispatcher.start(Caller, "no_such_command", {})
    assert unknown.value.code == ErrorCode.UNKNOWN_COMMAND


def test_a_plan_paused_while_its_run_is_starting_pauses_after_that_run(parts):
    """The step is running from the moment its run is asked for: a pause then waits for that run."""
    from liaison.plans.runner import PlanService

    link, loop = parts["link"], parts["loop"]

    async def list_experiments(*_a, **_k):
        return [{"key": "rt_demo"}]

    async def scenario():
        service = PlanService(parts["journal"], parts["hub"], Publisher(), link, lambda: False)
        service.attach()
        original = link.call
        link.call = lambda method, timeout=30.0, **kw: (list_experiments() if method == "list_experiments"
                                                        else original(method, timeout, **kw))
        link.hold = True  # the worker has not answered start_run yet
        await service.cmd_plan_start('name = "p"\nparticipants = ["a"]\n[[experiments]]\nkey = "rt_demo"\n')
        for _ in range(100):
            if link.held:
                break
            await asyncio.sleep(0.01)
        assert [m for m, _ in link.calls] == ["start_run"]
        assert service.state["steps"][0]["status"] == "running"
        state = service.cmd_plan_pause()
        assert state["status"] == "pausing", "paused at once while its run was starting"
        service._task.cancel()

    loop.run_until_complete(scenario())


# --- the clients' core --------------------------------------------------------------------------

def test_client_core_handshake_replies_and_duplicates():
    core = ClientCore("t", role="observer", name="me")
    core.connecting()
    assert core.receive('{"v":1,"type":"hello"}') == []
    auth = json.loads(core.auth_text())
    assert auth == {"v": 1, "type": "auth", "token": "t", "role": "observer", "since": None, "client": "me"}
    welcome = core.receive('{"v":1,"type":"welcome","last_seq":5}')
    assert isinstance(welcome[0], Welcome) and core.last_seq == 5
    request_id, text = core.request_text("trials", {"n": 2})
    assert json.loads(text)["args"] == {"n": 2, "start": 0}
    events = '[{"v":1,"type":"event","seq":5,"event":"x","time":1,"data":{}},' \
             '{"v":1,"type":"event","seq":6,"event":"y","time":1,"data":{}}]'
    items = core.receive(events)
    assert [type(i) for i in items] == [Event] and items[0].seq == 6, "seq 5 was already seen"
    reply = core.receive(json.dumps({"v": 1, "type": "reply", "id": request_id, "ok": True, "result": 1}))
    assert reply == [Reply(request_id, True, 1, None)]
    assert core.receive(json.dumps({"v": 1, "type": "reply", "id": 999, "ok": True})) == [], "not ours"
    alert = core.receive('{"v":1,"type":"alert","code":"storage_failed","message":"m","details":{}}')
    assert alert[0].event == "alert" and core.last_seq == 6, "an alert takes no seq"
    assert json.loads(core.auth_text())["since"] == 6, "a reconnect asks for what follows"


@pytest.mark.parametrize("event", [
    '{"v":1,"type":"event","event":"x","time":1,"data":{}}',  # no seq
    '{"v":1,"type":"event","seq":"7","event":"x","time":1,"data":{}}',
    '{"v":1,"type":"event","seq":7,"event":3,"time":1,"data":{}}',
    '{"v":1,"type":"event","seq":7,"event":"x","time":"now","data":{}}',
    '{"v":1,"type":"event","seq":7,"event":"x","time":1,"data":[1]}',
    '{"v":1,"type":"gap","from_seq":1}',
])
def test_client_core_names_a_malformed_event_as_a_protocol_error(event):
    """Not a KeyError or TypeError deep in a reader: the typed error a client drops the connection on."""
    core = ClientCore("t")
    core.connecting()
    core.receive('{"v":1,"type":"welcome","last_seq":5}')
    with pytest.raises(ProtocolError) as bad:
        core.receive(event)
    assert bad.value.code == ErrorCode.INVALID_MESSAGE and core.last_seq == 5


def test_client_core_checks_arguments_before_sending_and_knows_when_to_give_up():
    core = ClientCore("t")
    with pytest.raises(ProtocolError) as bad:
        core.request_text("skip_trials", {"n": "2"})
    assert bad.value.code == ErrorCode.INVALID_ARGS and not core.pending
    core.connecting()
    core.receive('{"v":1,"type":"hello"}')
    assert isinstance(core.receive('{"v":1,"type":"reply","id":null,"ok":false,'
                                   '"error":{"code":"unauthorized","message":"no"}}')[0], Refused)
    core.receive('{"v":1,"type":"goodbye","code":4001,"reason":"authentication failed"}')
    assert core.connection_lost() == ([], False)
    core.connecting()
    core.request_text("ping", {})
    lost, retry = core.connection_lost()
    assert lost == [2] and retry


# --- both clients over the in-memory transport ------------------------------------------------

def serve_in_memory(parts):
    """A connector for the clients: each connection is a ClientConnection on the parts' event loop."""
    async def connector(url, **_options):
        conn, client_end = connection(parts)
        asyncio.get_running_loop().create_task(conn.serve())
        return client_end

    return connector


def test_async_client_runs_and_follows_events(parts):
    from liaison.client import AsyncClient, Conflict

    async def scenario():
        async with AsyncClient("ws://memory/", TOKEN, connector=serve_in_memory(parts), reconnect=False) as client:
            run = await client.run("demo", {"participant": "p"})
            assert (run.run_id, run.key) == ("r1", "demo")
            with pytest.raises(Conflict):
                await client.pause()
            state = await client.state()
            assert state.status == "idle" and state.server.version == "test"
            from session.events import RunFinished
            publisher = Publisher(first_seq=parts["hub"].last_seq + 1)
            parts["hub"].dispatch(publisher.publish(RunFinished(run_id="r1", key="demo", outcome="completed", rows=0,
                                                                data_files=[], duration=1.0)))
            end = await run.wait(5)
            assert end.data["outcome"] == "completed"

    parts["loop"].run_until_complete(scenario())


def test_blocking_client_has_the_async_clients_commands():
    import inspect

    from liaison.client import AsyncClient, Client

    def commands(cls):
        return {name: inspect.signature(getattr(cls, name)) for name in dir(cls)
                if not name.startswith("_") and inspect.isfunction(getattr(cls, name))
                and name not in ("connect", "close", "events")}

    sync, async_ = commands(Client), commands(AsyncClient)
    assert set(sync) == set(async_)
    for name in sync:
        assert list(sync[name].parameters) == list(async_[name].parameters), name
        assert sync[name].return_annotation == async_[name].return_annotation or name in ("run",), name


def test_an_unpicklable_value_in_the_data_travels_as_its_repr():
    """One object pickle refuses (a lambda in a row) once killed the worker's sender: nothing came back again."""
    from session import pipe
    from session.events import DataRows

    event = DataRows(run_id="r", key="k", first_row=0, rows=[{"rt": 0.5, "callback": lambda: 1}])
    (message,) = pipe.FrameDecoder().feed(pipe.encode(("event", event)))
    row = message[1].rows[0]
    assert row["rt"] == 0.5 and row["callback"].startswith("<function")
