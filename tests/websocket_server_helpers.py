"""Helpers of the end-to-end tests of `threadswoole.websocket.Server` (tests/test_websocket_server*.py).

* `command_app(...)`: a server setup that echoes and obeys JSON commands sent as text
  messages (`{"cmd": "push", ...}`), reporting each result with emit(), so one server per
  mode serves a whole module (`module_ws_server`); `start_ws` for a server of one test;
* `fresh_events`: an autouse fixture to import, so no test sees its predecessor's events;
* `needs_websockets`: skip marker for tests that use the `websockets` library as a client;
* the clients and frame builder of tests/websocket_clients.py, re-exported.
"""

from __future__ import annotations

import importlib.util
import json
import time
from typing import Any, Callable

import pytest

from conftest import MODES, ServerFactory
from websocket_clients import (  # noqa: F401 - re-exported for the test modules
    BINARY, CLOSE, PING, PONG, TEXT, CodecClient, Received, WsClient, close_payload, frame,
)

needs_websockets = pytest.mark.skipif(importlib.util.find_spec("websockets") is None,
                                      reason="the websockets library is not installed (not a test extra)")


def ws_server_class() -> Any:
    from threadswoole import websocket

    return websocket.Server


# -- the server ---------------------------------------------------------------------------------
def _status(srv: Any, fd: int) -> dict[str, Any]:
    import threadswoole

    info = srv.get_client_info(fd)
    return {"exist": srv.exist(fd), "established": srv.is_established(fd), "alias": srv.isEstablished(fd),
            "plain_exist": threadswoole.Server.exist(srv, fd),
            "websocket_status": info.get("websocket_status") if info else None}


def command_app(user_process: bool = False, on_open_push: bool = True) -> Callable[[Any, Callable[..., Any]], None]:
    """A setup: open pushes {"fd": fd}; text messages that are JSON commands are obeyed, other
    messages echoed with their opcode; delivered control frames are reported as "control";
    plain HTTP requests answer "plain <path>" and report push-to-self (a non-WebSocket fd)."""

    def setup(server: Any, emit: Callable[..., Any]) -> None:
        from threadswoole import Process
        from threadswoole.websocket.frame import CloseFrame

        process_box: list[Any] = []
        if user_process:
            def pusher(process: Any) -> None:
                while True:
                    message = json.loads(process.read())
                    ok = server.push(message["to"], message["data"].encode(), message.get("opcode", TEXT))
                    emit("process_push", ok=ok, error=server.get_last_error())

            process_box.append(Process(pusher, False, 2))
            server.add_process(process_box[0])

        def on_open(srv: Any, request: Any) -> None:
            emit("open", fd=request.fd, path=request.server["request_uri"], **_status(srv, request.fd))
            if on_open_push:
                srv.push(request.fd, json.dumps({"fd": request.fd}))

        def run(srv: Any, fd: int, command: dict[str, Any]) -> None:
            name = command["cmd"]
            if name == "push":
                data = command["data"].encode() if "hex" not in command else bytes.fromhex(command["hex"])
                ok = srv.push(command.get("to", fd), data, command.get("opcode", TEXT), command.get("finish", True))
                emit("pushed", ok=ok, error=srv.get_last_error())
            elif name == "push_many":
                results = [srv.push(command.get("to", fd), data.encode(), opcode, finish) for data, opcode, finish in command["frames"]]
                emit("pushed", ok=results, error=srv.get_last_error())
            elif name == "flood":  # push until it fails (a client that does not read)
                chunk, count = b"f" * command["size"], 0
                while count < command["limit"] and srv.push(command["to"], chunk, 2):
                    count += 1
                emit("flooded", count=count, error=srv.get_last_error())
            elif name == "status":
                emit("status", fd=command["fd"], **_status(srv, command["fd"]))
            elif name == "disconnect":
                target = command.get("fd", fd)
                ok = srv.disconnect(target, *command.get("args", []))
                emit("disconnected", ok=ok, error=srv.get_last_error(), after=_status(srv, target) if ok else None)
            elif name == "stats":
                emit("stats", stats=srv.stats())
            elif name == "task":
                emit("tasked", id=srv.task({"to": command["to"], "data": command["data"]}))
            elif name == "timer":
                def fire() -> None:
                    emit("timer_push", ok=srv.push(command["to"], command["data"].encode()))
                srv.after(command.get("ms", 1), fire)
            elif name == "process":
                process_box[0].write(json.dumps(command))
            elif name == "send_packed":  # a frame made by pack(), sent raw
                srv.send(fd, srv.pack(bytes.fromhex(command["hex"]), command["opcode"], command.get("finish", True)))
            else:
                emit("unknown", name=name)

        def on_message(srv: Any, frame_in: Any) -> None:
            if isinstance(frame_in, CloseFrame):
                emit("control", fd=frame_in.fd, opcode=frame_in.opcode, code=frame_in.code, reason=frame_in.reason,
                     data=frame_in.data.hex())
                return
            if frame_in.opcode in (PING, PONG):
                emit("control", fd=frame_in.fd, opcode=frame_in.opcode, data=frame_in.data.hex())
                return
            if frame_in.opcode == TEXT and frame_in.data[:8] == b'{"cmd": ':
                run(srv, frame_in.fd, json.loads(frame_in.data))
                return
            emit("message", fd=frame_in.fd, opcode=frame_in.opcode, size=len(frame_in.data), finish=frame_in.finish)
            srv.push(frame_in.fd, frame_in.data, frame_in.opcode)

        def on_request(request: Any, response: Any) -> None:
            uri = request.server["request_uri"]
            fd = request.fd
            target = int(request.get["to"]) if request.get and "to" in request.get else None
            info = server.get_client_info(fd)
            pushed_self = server.push(fd, b"x")
            emit("request", fd=fd, uri=uri, pushed_self=pushed_self, error=server.get_last_error(),
                 exist=server.exist(fd), websocket_status=info.get("websocket_status") if info else None)
            if target is not None:
                emit("request_push", ok=server.push(target, b"from http"))
            response.end(f"plain {uri}".encode())

        def on_task(srv: Any, task_id: int, src: int, data: Any) -> Any:
            ok = srv.push(data["to"], data["data"].encode())
            emit("task_push", ok=ok, error=srv.get_last_error(), task_worker=srv.task_worker)
            return "done"

        server.on("open", on_open)
        server.on("message", on_message)
        server.on("request", on_request)
        server.on("close", lambda srv, fd, reactor_id: emit("close", fd=fd))
        if server.setting.get("task_worker_num"):
            server.on("task", on_task)
            server.on("finish", lambda srv, task_id, data: emit("finished", data=data))

    return setup


def module_ws_server(setup: Callable[..., Any], settings: dict[str, Any] | None = None, *, modes: list[str] = MODES) -> Any:
    """A module-scoped fixture: a websocket.Server running `setup` in each of `modes`."""

    @pytest.fixture(scope="module", params=modes)
    def fixture(request: Any, tmp_path_factory: Any) -> Any:
        factory = ServerFactory(tmp_path_factory.mktemp("ws"))
        handle = factory(setup, mode=request.param, settings=dict(settings or {}), server_class=ws_server_class())
        handle.mode = request.param  # type: ignore[attr-defined]
        try:
            yield handle
        finally:
            factory.cleanup()

    return fixture


@pytest.fixture(autouse=True)
def fresh_events(request: Any) -> Any:
    """Import into a module with a module-scoped `server`: each test starts with no events
    left over from the one before (a "pushed" it never waited for, say)."""
    if "server" in request.fixturenames:
        request.getfixturevalue("server").drain()
    yield


def start_ws(run_server: Any, mode: str, settings: dict[str, Any] | None = None, setup: Callable[..., Any] | None = None) -> Any:
    """A function-scoped websocket.Server (for settings one test needs)."""
    return run_server(setup or command_app(), mode=mode, settings={"worker_num": 1, **(settings or {})},
                      server_class=ws_server_class())


def stats_of(handle: Any, client: WsClient) -> dict[str, Any]:
    client.command("stats")
    return handle.wait("stats")["stats"]


def settled(handle: Any, client: WsClient, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
    """stats() asked until `predicate` holds (counters of other threads arrive a little late)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = stats_of(handle, client)
        if predicate(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def tree_rss(handle: Any) -> int:
    total = 0
    for proc in handle.tree():
        try:
            total += proc.memory_info().rss
        except Exception:  # noqa: BLE001 - a process that just went
            pass
    return total
