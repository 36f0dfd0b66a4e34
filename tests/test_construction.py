"""Construction, settings, events and phases (contract §17 items 1-9, R2, R7, R8)."""

from __future__ import annotations

import errno
import socket
import warnings

import pytest

import threadswoole
from threadswoole import (
    SWOOLE_BASE,
    SWOOLE_PROCESS,
    SWOOLE_SOCK_TCP,
    SWOOLE_SOCK_TCP6,
    SWOOLE_SOCK_UDP,
    SWOOLE_SOCK_UNIX_STREAM,
    SWOOLE_SSL,
    ConfigError,
    ServerError,
    StateError,
    UnknownSettingWarning,
)
from threadswoole import Server

pytestmark = pytest.mark.timeout(30)


def test_port_zero_gives_the_os_port_and_base_is_the_default_mode():
    server = Server("127.0.0.1", 0)
    assert server.ports[0].port > 0
    assert server.mode == SWOOLE_BASE
    assert server.ports[0] is server.ports[0]
    assert server.port == server.ports[0].port
    assert server.ports[0].sock == server.get_socket().fileno()


def test_binding_a_port_in_use_raises_server_error_with_errno():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        with pytest.raises(ServerError) as info:
            Server("127.0.0.1", holder.getsockname()[1])
        assert info.value.errno == errno.EADDRINUSE
        assert isinstance(info.value, OSError)
    finally:
        holder.close()


def test_unknown_mode_and_sock_type_are_value_errors():
    with pytest.raises(ValueError):
        Server("127.0.0.1", 0, 99)
    with pytest.raises(ValueError):
        Server("127.0.0.1", 0, SWOOLE_BASE, 77)
    with pytest.raises(ValueError):
        Server("127.0.0.1", 0, SWOOLE_BASE, SWOOLE_SOCK_UDP | SWOOLE_SSL)
    with pytest.raises(TypeError):
        Server("127.0.0.1", "9501")


def test_add_listener_and_its_aliases():
    server = Server("127.0.0.1", 0)
    udp = server.add_listener("127.0.0.1", 0, SWOOLE_SOCK_UDP)
    assert udp.port > 0 and udp.type == SWOOLE_SOCK_UDP
    assert server.listen("127.0.0.1", 0).port > 0
    assert server.addListener("127.0.0.1", 0, SWOOLE_SOCK_TCP).port > 0
    assert server.addlistener("127.0.0.1", 0).port > 0
    assert len(server.ports) == 5
    in_use = server.ports[1].port
    assert server.add_listener("127.0.0.1", in_use, SWOOLE_SOCK_UDP) is False
    assert server.get_last_error() == errno.EADDRINUSE
    assert server.listen("127.0.0.1", server.ports[0].port) is False


def test_ipv6_and_unix_listeners(tmp_path):
    server = Server("::1", 0, SWOOLE_BASE, SWOOLE_SOCK_TCP6)
    assert server.ports[0].port > 0
    path = str(tmp_path / "s.sock")
    unix = Server(path, 0, SWOOLE_BASE, SWOOLE_SOCK_UNIX_STREAM)
    assert unix.ports[0].port == 0
    probe = socket.socket(socket.AF_UNIX)
    probe.connect(path)
    probe.close()


def test_set_merges_and_setting_is_read_only():
    server = Server("127.0.0.1", 0)
    server.set(worker_num=2)
    server.set({"backlog": 64})
    assert server.setting["worker_num"] == 2 and server.setting["backlog"] == 64
    with pytest.raises(TypeError):
        server.setting["x"] = 1  # type: ignore[index]
    server.set(max_conn=100)
    assert server.setting["max_connection"] == 100


def test_setting_is_read_only_inside_a_running_server_too(run_server, mode):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            try:
                srv.setting["worker_num"] = 5
                emit("assigned", error=None)
            except Exception as exc:  # noqa: BLE001 - the type is what the test checks
                emit("assigned", error=type(exc).__name__, worker_num=srv.setting["worker_num"])

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda *args: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    event = handle.wait("assigned")
    assert event["error"] == "TypeError" and event["worker_num"] == 1
    assert handle.stop() == 0


def test_setting_validation():
    server = Server("127.0.0.1", 0)
    with pytest.warns(UnknownSettingWarning):
        server.set(worker_nmu=2)
    assert server.setting["worker_nmu"] == 2  # stored anyway, like Swoole
    with pytest.raises(ConfigError):
        server.set(package_eof=b"123456789")
    with pytest.raises(TypeError):
        server.set(worker_num="2")
    with pytest.raises(ConfigError):
        server.set(worker_num=0)
    with pytest.raises(ConfigError):
        server.set(dispatch_mode=9)
    with pytest.raises(ConfigError):
        server.set(package_length_type="x")
    with pytest.raises(ConfigError):
        server.set(open_http2_protocol=True)
    with pytest.raises(ConfigError):
        server.set(dispatch_func=lambda *a: 0)  # BASE mode has no dispatcher
    with pytest.raises(TypeError):
        server.set(open_eof_check="yes")
    with pytest.raises(TypeError):
        server.set(["worker_num", 1])  # type: ignore[arg-type]
    server.set(open_eof_check=1, package_eof="\r\n")
    assert server.setting["open_eof_check"] is True and server.setting["package_eof"] == b"\r\n"


def test_port_set_refuses_server_settings():
    server = Server("127.0.0.1", 0)
    port = server.add_listener("127.0.0.1", 0)
    port.set(open_length_check=True)
    assert port.setting["open_length_check"] is True
    assert server.ports[0].setting["open_length_check"] is False  # a plain server's ports don't inherit
    with pytest.raises(ConfigError):
        port.set(worker_num=2)


def test_event_names_are_normalised_and_replaced():
    server = Server("127.0.0.1", 0)
    f = lambda *a: None  # noqa: E731
    g = lambda *a: None  # noqa: E731
    assert server.on("Receive", f) is True
    server.on("receive", g)
    assert server.get_callback("RECEIVE") is g
    assert server.getCallback("receive") is g
    assert server.get_callback("packet") is None
    with pytest.raises(ValueError):
        server.on("onReceive", f)
    with pytest.raises(ValueError):
        server.on("nosuchevent", f)
    with pytest.raises(TypeError):
        server.on("connect", 42)

    @server.on("connect")
    def handler(*args):
        pass

    assert handler.__name__ == "handler" and server.get_callback("connect") is handler
    server.on("WorkerStart", f)
    assert server.get_callback("worker_start") is f and server.get_callback("workerstart") is f
    port = server.add_listener("127.0.0.1", 0)
    with pytest.raises(ValueError):
        port.on("worker_start", f)  # process-level events are not per port


def test_start_without_required_callbacks_raises_state_error():
    server = Server("127.0.0.1", 0)
    with pytest.raises(StateError):
        server.start()
    udp = Server("127.0.0.1", 0, SWOOLE_BASE, SWOOLE_SOCK_UDP)
    udp.on("receive", lambda *a: None)
    with pytest.raises(StateError):
        udp.start()  # a UDP listener needs 'packet'
    tcp = Server("127.0.0.1", 0)
    tcp.on("receive", lambda *a: None)
    tcp.add_listener("127.0.0.1", 0, SWOOLE_SOCK_UDP)
    with pytest.raises(StateError):
        tcp.start()


def test_ssl_without_certificate_is_a_config_error():
    server = Server("127.0.0.1", 0, SWOOLE_BASE, SWOOLE_SOCK_TCP | SWOOLE_SSL)
    server.on("receive", lambda *a: None)
    with pytest.raises(ConfigError):
        server.start()


def test_running_only_calls_before_start_raise_state_error():
    server = Server("127.0.0.1", 0)
    with pytest.raises(StateError):
        server.tick(10, lambda *a: None)
    with pytest.raises(StateError):
        server.after(10, lambda: None)
    with pytest.raises(StateError):
        server.send(1, b"x")
    with pytest.raises(StateError):
        server.stats()
    with pytest.raises(StateError):
        threadswoole.Timer.tick(10, lambda *a: None)


def test_aliases_resolve_to_the_primary_at_lookup_time():
    class Custom(Server):
        def get_client_info(self, fd, reactor_id=-1, ignore_error=False):
            return {"custom": fd}

    server = Custom("127.0.0.1", 0)
    assert server.getClientInfo(3) == {"custom": 3}
    assert server.connection_info(4) == {"custom": 4}
    assert Server.getClientList is Server.get_client_list
    assert server.taskworker is False


def test_constants_and_errors_match_the_contract():
    assert (threadswoole.SWOOLE_BASE, threadswoole.SWOOLE_PROCESS, threadswoole.SWOOLE_THREAD) == (1, 2, 3)
    assert threadswoole.SWOOLE_TCP == threadswoole.SWOOLE_SOCK_TCP == 1
    assert threadswoole.SWOOLE_UNIX_DGRAM == 6 and threadswoole.SWOOLE_SSL == 512
    assert threadswoole.SWOOLE_ERROR_SESSION_CLOSED_BY_SERVER == 1001
    assert threadswoole.ErrorCode.OUTPUT_BUFFER_OVERFLOW == 1008 and threadswoole.ErrorCode.DATA_LENGTH_TOO_LARGE == 1202
    assert threadswoole.strerror(1004) == "Session closed"
    assert threadswoole.strerror(errno.EADDRINUSE) == "Address already in use"
    assert issubclass(threadswoole.ContextError, threadswoole.StateError)
    assert issubclass(threadswoole.ConfigError, ValueError)
    assert threadswoole.cpu_num() >= 1
    assert isinstance(threadswoole.get_last_error(), int)  # never reset on success (R3.6)


def test_start_twice_and_calls_after_start_raise(run_server):
    def setup(server, emit):
        def on_start(srv):
            results = {}
            for name, call in {
                "set": lambda: srv.set(worker_num=3),
                "on": lambda: srv.on("connect", lambda *a: None),
                "add_listener": lambda: srv.add_listener("127.0.0.1", 0),
                "start": lambda: srv.start(),
                "port_set": lambda: srv.ports[0].set(open_eof_check=True),
            }.items():
                try:
                    call()
                    results[name] = "no error"
                except StateError as exc:
                    results[name] = type(exc).__name__
            emit("phase_errors", **results)
            srv.shutdown()

        server.on("start", on_start)
        server.on("receive", lambda *a: None)

    handle = run_server(setup, wait_for=None)
    errors = handle.wait("phase_errors")
    assert {k: errors[k] for k in ("set", "on", "add_listener", "start", "port_set")} == dict.fromkeys(("set", "on", "add_listener", "start", "port_set"), "StateError")
    assert handle.wait_exit() == 0


def test_setting_is_completed_with_effective_values_at_start(run_server, mode):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            emit("setting", **{k: srv.setting[k] for k in ("worker_num", "task_worker_num", "dispatch_mode", "buffer_output_size", "package_max_length", "max_wait_time", "task_ipc_mode")})

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    setting = handle.wait("setting")
    assert setting["worker_num"] == 1 and setting["task_worker_num"] == 0 and setting["dispatch_mode"] == 2
    assert setting["buffer_output_size"] == 2 * 1024 * 1024 == setting["package_max_length"]
    assert setting["max_wait_time"] == 3.0 and setting["task_ipc_mode"] == 1
    assert handle.stop() == 0


def test_unknown_spelling_warnings_do_not_break_start(run_server):
    def setup(server, emit):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.set(some_future_setting=True)
        server.on("receive", lambda *a: None)

    handle = run_server(setup)
    assert handle.stop() == 0


def test_process_mode_constructs():
    server = Server("127.0.0.1", 0, SWOOLE_PROCESS)
    assert server.mode == SWOOLE_PROCESS
