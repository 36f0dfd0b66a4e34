"""Routers: how a running-only Server call is carried out for the calling worker.

`Router` implements what any worker can do from shared memory alone (exist, client info,
lists, stats, worker status). `LocalRouter` is the router of a worker that owns connections
(BASE, THREAD): a session it holds is handled at once; a session held elsewhere goes through
the worker's `SessionForwarder` to its owner (a mailbox in BASE, the owner's command queue in
THREAD), as contract §18.1 asks, and anything closed or unknown fails with 1004 / 1005 (§18.2).
The same forwarder is given to the worker's Host, so `send()` of a foreign session takes the
same way from either.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import TYPE_CHECKING, Any, Protocol

from threadswoole._arguments import as_bytes, check_session
from threadswoole._context import current, set_error
from threadswoole.connections import heartbeat, operations
from threadswoole.constants import SWOOLE_WORKER_BUSY, SWOOLE_WORKER_EXIT, SWOOLE_WORKER_IDLE
from threadswoole.errors import ContextError, ErrorCode, StateError
from threadswoole.state import shared as layout
if TYPE_CHECKING:
    from threadswoole.connections.host import Host
    from threadswoole.workers.runtime import Runtime


class Router:
    """Shared-memory reads every role may do; mutating calls raise ContextError by default."""

    role_name = "this process"

    def __init__(self, server: Any, state: layout.SharedState, driver: Any) -> None:
        self.server = server
        self.state = state
        self.driver = driver

    def _refuse(self, what: str) -> Any:
        raise ContextError(f"{what}() cannot be called from {self.role_name}")

    # connection operations: refused unless a subclass knows how
    def send(self, session: int, data: bytes) -> bool:
        return self._refuse("send")

    def send_checked(self, fd: Any, data: Any, server_socket: int = -1) -> bool:
        """`Server.send` with its arguments checked and converted: a str fd is a Unix datagram
        peer, anything else a session id (R3: TypeError / ValueError), data as bytes (R4)."""
        if type(fd) is str:
            return self.send_datagram(fd, as_bytes(data), server_socket)
        return self.send(check_session(fd), as_bytes(data))

    def send_datagram(self, path: str, data: bytes, server_socket: int) -> bool:
        return self._refuse("send")

    def sendfile(self, session: int, path: str, offset: int, length: int) -> bool:
        return self._refuse("sendfile")

    def sendto(self, ip: str, port: int, data: bytes, server_socket: int) -> bool:
        return self._refuse("sendto")

    def send_wait(self, session: int, data: bytes) -> bool:
        return self._refuse("send_wait")

    def close(self, session: int, reset: bool) -> bool:
        return self._refuse("close")

    def pause(self, session: int, paused: bool) -> bool:
        return self._refuse("pause" if paused else "resume")

    def protect(self, session: int, value: bool) -> bool:
        return self._refuse("protect")

    def confirm(self, session: int) -> bool:
        return self._refuse("confirm")

    def bind(self, session: int, uid: int) -> bool:
        return self._refuse("bind")

    def heartbeat(self, close: bool) -> Any:
        return self._refuse("heartbeat")

    def send_message(self, message: Any, worker_id: int) -> bool:
        return self._refuse("send_message")

    def switch_codec(self, session: int, spec: bytes) -> bool:
        return self._refuse("switch_codec")

    def resume_codec(self, session: int) -> bool:
        return self._refuse("resume_codec")

    def push(self, session: int, payload: bytes) -> bool:
        return self._refuse("push")

    # tasks (contract §7): through this worker's TaskClient (workers/task_client.py)
    tasks: Any = None

    def _task_client(self, what: str) -> Any:
        if self.tasks is None:
            if self.server.setting.get("task_worker_num", 0) <= 0:
                raise StateError(f"{what}() needs task workers: set task_worker_num > 0 before start()")
            return self._refuse(what)
        return self.tasks

    def task(self, data: Any, dst: int, callback: Any) -> Any:
        return self._task_client("task").task(data, dst, callback)

    def task_wait(self, data: Any, timeout: Any, dst: int) -> Any:
        return self._task_client("task_wait").task_wait(data, timeout, dst)

    def task_wait_multi(self, tasks: list[Any], timeout: Any) -> Any:
        return self._task_client("task_wait_multi").task_wait_multi(tasks, timeout)

    def task_co(self, tasks: list[Any], timeout: Any) -> Any:
        return self._task_client("task_co").task_co(tasks, timeout)

    def finish(self, data: Any) -> bool:
        raise ContextError(f"finish() can only be called inside on_task in a task worker, not from {self.role_name}")

    def command(self, name: str, process_id: int, process_type: int, data: Any, json_decode: bool) -> Any:
        raise ContextError(f"command() can only be called in the master process, not from {self.role_name}")

    def reload(self, only_task: bool) -> bool:
        return self.driver.request_reload(only_task)

    def shutdown(self) -> bool:
        return self.driver.request_shutdown()

    def stop(self, worker_id: int, wait_event: bool) -> bool:
        if isinstance(worker_id, bool) or not isinstance(worker_id, int):
            raise TypeError("worker_id must be an int")
        return self.driver.request_stop(worker_id, wait_event)

    # reads from shared memory
    def _missing(self, session: int) -> bool:
        return missing(self.state, session)

    def exist(self, session: int) -> bool:
        return self.state.alive(session)

    def client_info(self, session: int, ignore_error: bool) -> Any:
        info = self.state.client_info(session, ignore_error)
        if info is None:
            return self._missing(session)
        return info

    def client_list(self, port_index: int | None) -> list[int]:
        sessions = self.state.live_sessions()
        if port_index is not None:
            sessions = [s for s in sessions if self.state.q[self.state.record_base(s) + layout.C_PORT_INDEX] == port_index]
        return sessions

    def flush_counters(self) -> None:
        """Make this worker's own counters visible before reading totals."""

    def worker_counters(self) -> tuple[int, int, int]:
        return 0, 0, 0

    def stats(self) -> dict[str, int]:
        self.flush_counters()
        state = self.state
        totals = state.stat_totals()
        setting = self.server.setting
        worker_num = setting["worker_num"]
        task_num = setting.get("task_worker_num", 0)
        statuses = [state.worker_field(w, layout.W_STATUS) for w in range(worker_num + task_num)]
        live = state.live_sessions()
        requests, responses, dispatches = self.worker_counters()
        result = {
            "start_time": int(state.d[layout.H_START_TIME]),
            "connection_num": totals["accept_count"] - totals["close_count"],
            "abort_count": totals["abort_count"],
            "accept_count": totals["accept_count"],
            "close_count": totals["close_count"],
            "worker_num": worker_num,
            "task_worker_num": task_num,
            "user_worker_num": state.worker_slots - worker_num - task_num,
            "idle_worker_num": sum(1 for s in statuses[:worker_num] if s == SWOOLE_WORKER_IDLE),
            "dispatch_count": totals["dispatch_count"],
            "request_count": totals["request_count"],
            "response_count": totals["response_count"],
            "total_recv_bytes": totals["total_recv_bytes"],
            "total_send_bytes": totals["total_send_bytes"],
            "pipe_packet_msg_id": state.q[layout.H_PIPE_MSG_ID],
            "session_round": sum(state.q[state.acceptor_base(a) + layout.A_ROUND] for a in range(state.acceptors)),
            "min_fd": live[0] if live else 0,
            "max_fd": live[-1] if live else 0,
            "worker_request_count": requests,
            "worker_response_count": responses,
            "worker_dispatch_count": dispatches,
            "task_idle_worker_num": sum(1 for s in statuses[worker_num:] if s == SWOOLE_WORKER_IDLE),
            "tasking_num": max(0, totals["task_dispatch_count"] - totals["task_done_count"]),
            "coroutine_num": 0,
            "coroutine_peek_num": 0,
            "callback_error_count": totals["callback_error_count"],
            "protocol_error_count": totals["protocol_error_count"],
        }
        if task_num and setting.get("task_ipc_mode", 1) in (2, 3):
            # tasks sent and not yet read by a task worker (contract §5.6: message-queue modes)
            result["task_queue_num"] = max(0, totals["task_dispatch_count"] - totals["task_taken_count"])
            result["task_queue_bytes"] = max(0, totals["task_dispatch_bytes"] - totals["task_taken_bytes"])
        return result

    def worker_pid(self, worker_id: int) -> Any:
        if worker_id < 0:
            worker_id = current().worker_id
        if not 0 <= worker_id < self.state.worker_slots:
            return False
        pid = self.state.worker_field(worker_id, layout.W_PID)
        return pid if pid > 0 else False

    def worker_status(self, worker_id: int) -> Any:
        if worker_id < 0:
            worker_id = current().worker_id
            if worker_id < 0:
                return False
            worker = current().worker_obj
            if worker is not None and worker.stopping:
                return SWOOLE_WORKER_EXIT  # a draining predecessor (reload_async, stop(-1, true))
            return SWOOLE_WORKER_BUSY  # asked from inside a callback: this worker is busy
        if not 0 <= worker_id < self.state.worker_slots:
            return False
        status = self.state.worker_field(worker_id, layout.W_STATUS)
        return status if status > 0 else False


def missing(state: layout.SharedState, session: int) -> bool:
    """Fail for a session that is not usable: 1003 closing, 1004 closed, 1005 never existed."""
    status = state.session_state(session)
    if status == layout.CLOSING:
        return set_error(ErrorCode.SESSION_CLOSING)
    return set_error(ErrorCode.SESSION_CLOSED if status != layout.NEVER else ErrorCode.SESSION_NOT_EXIST)


class Carrier(Protocol):
    """The mode's way to another worker that owns connections (BASE mailbox, THREAD queue)."""

    def carry(self, owner_worker: int, op: int, session: int, payload: bytes) -> bool: ...


class SessionForwarder:
    """An operation on a session owned elsewhere: find its owner in shared memory, then let
    the carrier take it there; closed or unknown sessions fail with 1003/1004/1005."""

    def __init__(self, state: layout.SharedState, carrier: Carrier | None) -> None:
        self.state = state
        self.carrier = carrier  # None: nobody else owns connections (BASE with one worker)

    def forward(self, op: int, session: int, payload: bytes = b"") -> bool:
        owner = self.state.owner(session)
        if owner is None or not self.state.alive(session):
            return missing(self.state, session)
        if self.carrier is None:
            return set_error(ErrorCode.SESSION_NOT_EXIST)
        if self.state.q[self.state.record_base(session) + layout.C_FLAGS] & layout.FLAG_OWNER_LEAVING:
            # its owner drains for a reload and reads no messages: closing, as far as we can reach
            return set_error(ErrorCode.SESSION_CLOSING)
        return self.carrier.carry(owner[1], op, session, payload)


class LocalRouter(Router):
    """The router of a worker that owns connections (BASE worker, THREAD worker thread)."""

    role_name = "an event worker"

    def __init__(self, server: Any, state: layout.SharedState, driver: Any, host: "Host", runtime: "Runtime", forwarder: SessionForwarder, own_list_only: bool) -> None:
        super().__init__(server, state, driver)
        self.host = host
        self.runtime = runtime
        self.conns = host.conns
        self.forwarder = forwarder
        self.own_list_only = own_list_only

    def send(self, session: int, data: bytes) -> bool:
        # (Server.send's common case never comes here: it is written in Server.send, from the
        # worker's _context.SendPath, and in HostOutput.make_send_function's closure)
        return self.host.send_session(session, data)

    def _remote(self, op: int, session: int, payload: bytes = b"") -> bool:
        return self.forwarder.forward(op, session, payload)

    def sendfile(self, session: int, path: str, offset: int, length: int) -> bool:
        conn = self.conns.get(session)
        if conn is not None:
            return self.host.sendfile(conn, path, offset, length)
        import pickle

        return self._remote(operations.SENDFILE, session, pickle.dumps((path, offset, length)))

    def close(self, session: int, reset: bool) -> bool:
        conn = self.conns.get(session)
        if conn is not None:
            return self.host.close(conn, reset=reset)
        return self._remote(operations.CLOSE, session, b"\x01" if reset else b"")

    def pause(self, session: int, paused: bool) -> bool:
        conn = self.conns.get(session)
        if conn is not None:
            return self.host.set_paused(conn, paused)
        return self._remote(operations.PAUSE if paused else operations.RESUME, session)

    def protect(self, session: int, value: bool) -> bool:
        conn = self.conns.get(session)
        if conn is not None:
            return self.host.protect(conn, value)
        return self._remote(operations.PROTECT, session, b"\x01" if value else b"")

    def confirm(self, session: int) -> bool:
        conn = self.conns.get(session)
        if conn is not None:
            return self.host.confirm(conn)
        if self.state.owner(session) is not None and not (self.state.q[self.state.record_base(session) + layout.C_FLAGS] & layout.FLAG_DELAYED):
            return set_error(ErrorCode.SESSION_INVALID_ID)
        return self._remote(operations.CONFIRM, session)

    def bind(self, session: int, uid: int) -> bool:
        conn = self.conns.get(session)
        if conn is not None:
            return self.host.bind_uid(conn, uid)
        owner = self.state.owner(session)
        if owner is None:
            return self._missing(session)
        if self.state.q[self.state.record_base(session) + layout.C_UID]:
            return set_error(ErrorCode.SESSION_INVALID_ID)
        return self._remote(operations.BIND, session, (uid & 0xFFFF_FFFF).to_bytes(4, "big"))

    def exist(self, session: int) -> bool:
        conn = self.conns.get(session)
        if conn is not None:
            return not conn.closing
        return self.state.alive(session)

    def client_info(self, session: int, ignore_error: bool) -> Any:
        """Shared-memory info plus `ssl_client_cert` for a TLS connection this worker holds (§5.5)."""
        from threadswoole.connections.tls import add_client_cert

        return add_client_cert(super().client_info(session, ignore_error), self.conns.get(session))

    def client_list(self, port_index: int | None) -> list[int]:
        if not self.own_list_only:
            return super().client_list(port_index)
        sessions = sorted(s for s, c in self.conns.items() if not c.closing and (port_index is None or c.listener.index == port_index))
        return sessions

    def heartbeat(self, close: bool) -> Any:
        return heartbeat.check(self.host, close, self.driver.default_idle_time())

    def sendto(self, ip: str, port: int, data: bytes, server_socket: int) -> bool:
        return send_datagram_to(self.server, (ip, port), data, server_socket)

    def send_datagram(self, path: str, data: bytes, server_socket: int) -> bool:
        return send_datagram_to(self.server, path, data, server_socket)

    def send_wait(self, session: int, data: bytes) -> bool:
        conn = self.conns.get(session)
        if conn is None:
            return self._missing(session)
        if not self.host.send(conn, data):
            return False
        return self.host.wait_flushed(conn, self.server.setting["max_wait_time"])

    def flush_counters(self) -> None:
        self.runtime.flush()

    def worker_counters(self) -> tuple[int, int, int]:
        return self.runtime.requests, self.runtime.counters.response, 0

    def send_message(self, message: Any, worker_id: int) -> bool:
        return self.driver.send_message(message, worker_id)

    # -- codec changes and pushes (done here when the session is ours, else by its owner) -----
    def switch_codec(self, session: int, spec: bytes) -> bool:
        conn = self.conns.get(session)
        if conn is None:
            return self._remote(operations.SWITCH_CODEC, session, spec)
        self.host.switch_codec(conn, conn.listener.protocol.codec_for_switch(spec))
        return True

    def resume_codec(self, session: int) -> bool:
        conn = self.conns.get(session)
        if conn is None:
            return self._remote(operations.RESUME_CODEC, session)
        self.host.resume_codec(conn)
        return True

    def push(self, session: int, payload: bytes) -> bool:
        conn = self.conns.get(session)
        if conn is None:
            return self._remote(operations.PUSH, session, payload)
        if conn.closing:
            return self._missing(session)
        return self.host.write(conn, conn.codec.encode_push(payload))


def send_datagram_to(server: Any, address: Any, data: bytes, server_socket: int) -> bool:
    """sendto() through a datagram listener of the right family (§6.18). A bad IP or port is
    a runtime outcome in the contract's table ("False if ... a bad IP/port"): False + EINVAL."""
    if isinstance(address, tuple):
        ip, port = address
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if not isinstance(ip, str):
            raise TypeError(f"ip must be a str, not {type(ip).__name__}")
        if not 1 <= port <= 65535:
            return set_error(errno.EINVAL)
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
        except ValueError:
            return set_error(errno.EINVAL)
    else:
        family = socket.AF_UNIX
    candidates = [p for p in server.ports if not p.is_stream and p.family == family]
    if server_socket >= 0:
        candidates = [p for p in candidates if p.sock == server_socket]
    if not candidates:
        return set_error(ErrorCode.SERVER_INVALID_LISTEN_PORT)
    if len(data) > 65507:
        return set_error(ErrorCode.DATA_LENGTH_TOO_LARGE)
    try:
        candidates[0].listening_socket.sendto(data, address)
    except BlockingIOError:
        return set_error(ErrorCode.OUTPUT_BUFFER_OVERFLOW)
    except OSError as exc:
        return set_error(exc.errno or ErrorCode.SESSION_NOT_EXIST)
    return True
