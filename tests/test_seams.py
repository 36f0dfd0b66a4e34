"""The core's seams, without starting a server (uvicorn's protocol tests are the model).

A Host with a codec, a real reactor and a socketpair whose far end records what the Host
wrote; the Supervisor's decisions over recording Workers; the dispatch modes; the event
dispatcher. Each part is driven through the interface its neighbours use.
"""

from __future__ import annotations

import select
import socket
import struct

import pytest

from threadswoole.connections.acceptor import Acceptor, Placement
from threadswoole.connections.application import ApplicationProtocol
from threadswoole.connections.host import Host
from threadswoole.http.protocol import HttpProtocol
from threadswoole.loop.reactor import Reactor
from threadswoole.server.events import CallbackTable
from threadswoole.state.counters import StatCounters
from threadswoole.state.shared import SharedState
from threadswoole.workers import dispatch
from threadswoole.workers.roster import EVENT, TASK, Roster, RunConfig
from threadswoole.workers.supervisor import Supervisor
from threadswoole.workers.worker import Worker

pytestmark = pytest.mark.timeout(30)
SETTINGS = {"buffer_output_size": 1 << 20, "socket_buffer_size": 1 << 20, "max_wait_time": 1.0, "max_request": 0}


class Listener:
    """What a Host reads of the listener a connection came from (a Port, prepared)."""

    def __init__(self, protocol: ApplicationProtocol) -> None:
        self.protocol = protocol
        self.index = 0
        self.is_tcp = False
        self.tcp_nodelay = self.delay_receive = False
        self.tls_context = None
        self.high_watermark = self.low_watermark = 0
        self.heartbeat_idle_time = 0.0
        self.on_receive = None
        self.family = socket.AF_UNIX
        self.sock = -1
        self.port = 0
        self.type = 5


class RecordingSink:
    """The Host's events as a list (not inline: every packet comes to on_data)."""

    inline_runtime = None
    server = None

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def holds_record(self, conn): return False
    def on_open(self, conn): self.seen.append(("open", conn.session_id))
    def on_data(self, conn, data): self.seen.append(("data", data))
    def on_event(self, conn, event): self.seen.append(("event", event))
    def on_closed(self, conn): self.seen.append(("closed", conn.session_id))
    def on_buffer_full(self, conn): self.seen.append(("full",))
    def on_buffer_empty(self, conn): self.seen.append(("empty",))

    def on_protocol_failure(self, conn, response):
        # as the event dispatcher does when no handler still answers earlier requests
        self.seen.append(("failure", response))
        conn.host.send(conn, response)
        conn.host.close(conn)


class NoForwarding:
    def forward(self, op, session, payload): return False


@pytest.fixture
def host_with_peer():
    """A Host owning one end of a socketpair; the other end (the 'peer') records its writes."""
    made = []

    def make(protocol: ApplicationProtocol):
        state = SharedState(stat_slots=2, worker_slots=1, acceptors=1, capacity=16)
        reactor = Reactor("test")
        counters = StatCounters(state, 0)
        sink = RecordingSink()
        host = Host(settings=SETTINGS, state=state, reactor=reactor, reactor_id=0, counters=counters, sink=sink, forwarder=NoForwarding())
        ours, peer = socket.socketpair()
        peer.settimeout(5)
        listener = Listener(protocol)
        acceptor = Acceptor(state, 0, reactor, counters, max_connection=8, live_count=lambda: 0, place=lambda *a: Placement(0, 0, host))
        session = acceptor.allocate()
        acceptor.publish(session, ours, listener, None, 0, 0)
        conn = host.adopt(ours, session, listener, None)
        made.append((state, reactor, counters, peer))
        return host, conn, peer, sink, reactor

    yield make
    for state, reactor, counters, peer in made:
        peer.close()
        reactor.close()
        counters.release()
        state.destroy()


def run(reactor: Reactor, times: int = 3) -> None:
    for _ in range(times):
        reactor.run_once(0.05)


def test_a_framed_stream_reaches_the_sink_as_whole_packets_in_order(host_with_peer):
    framed = ApplicationProtocol({"open_length_check": True, "package_length_type": "N", "package_body_offset": 4})
    host, conn, peer, sink, reactor = host_with_peer(framed)
    packets = [struct.pack(">I", len(p)) + p for p in (b"one", b"two", b"three")]
    wire = b"".join(packets)
    peer.sendall(wire[:9])
    run(reactor)
    peer.sendall(wire[9:])
    run(reactor)
    assert sink.seen == [("open", conn.session_id)] + [("data", p) for p in packets]


def test_a_codec_reply_is_written_by_the_host_and_an_error_answered_then_closed(host_with_peer):
    host, conn, peer, sink, reactor = host_with_peer(HttpProtocol({"package_max_length": 1024}))
    peer.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    run(reactor)
    assert peer.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"  # the codec's Reply: no worker involved
    peer.sendall(b"hello")
    run(reactor)
    events = [item for kind, item in sink.seen if kind == "event"]
    assert len(events) == 1 and events[0].body == b"hello"
    peer.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n")  # over package_max_length
    run(reactor, 5)
    answer = peer.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400") and b"Connection: close" in answer
    failures = [item for kind, item in sink.seen if kind == "failure"]
    assert len(failures) == 1 and failures[0] == answer  # the Host handed the answer to the sink
    assert ("closed", conn.session_id) in sink.seen and host.counters.protocol_errors == 1


def test_switching_codecs_hands_the_held_bytes_to_the_new_codec_after_the_current_call(host_with_peer):
    class UpgradingHttp(HttpProtocol):
        hold_upgrade = True  # as on a WebSocket listener

    host, conn, peer, sink, reactor = host_with_peer(UpgradingHttp({"package_max_length": 1024}))
    upgrade = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: something\r\nConnection: upgrade\r\n\r\n"
    peer.sendall(upgrade + b"\x00raw bytes after the upgrade")
    run(reactor)
    framed = ApplicationProtocol({"open_eof_check": True, "package_eof": b"\n"})
    host.switch_codec(conn, framed.new_codec())  # the codec held what followed the request
    assert [kind for kind, _ in sink.seen].count("data") == 0  # not fed inside the caller...
    peer.sendall(b" and more\n")
    run(reactor)  # ...but on the next turn of the loop, ahead of the new bytes: one packet
    assert [item for kind, item in sink.seen if kind == "data"] == [b"\x00raw bytes after the upgrade and more\n"]


def test_output_the_socket_does_not_take_is_queued_and_written_when_it_can(host_with_peer):
    host, conn, peer, sink, reactor = host_with_peer(ApplicationProtocol())
    big = b"x" * (900 << 10)  # under buffer_output_size, over what a socketpair takes at once
    assert host.send(conn, big) is True
    assert conn.out_bytes > 0  # the socketpair took only part of it
    received = bytearray()
    while len(received) < len(big):
        ready, _, _ = select.select([peer], [], [], 0)
        if ready:
            received += peer.recv(1 << 20)
        run(reactor, 1)
    assert bytes(received) == big and conn.out_bytes == 0


# -- the Supervisor ---------------------------------------------------------------------------
class RecordingWorker(Worker):
    """A worker that records what the supervisor asks of it and exits when the test says."""

    log: list[tuple] = []
    next_pid = 1000

    def __init__(self, worker_id: int, role: str, supervisor_box: list) -> None:
        super().__init__(worker_id, role)
        RecordingWorker.next_pid += 1
        self._pid = RecordingWorker.next_pid
        self._alive = False
        self._box = supervisor_box

    @property
    def pid(self) -> int:
        return self._pid

    def start(self) -> None:
        self._alive = True
        self.log.append(("start", self.worker_id, self.role, self._pid))

    def stop(self, wait_event: bool = False) -> None:
        self.stopping = True
        self.log.append(("stop", self.worker_id, self._pid))

    def kill(self) -> None:
        self.log.append(("kill", self.worker_id, self._pid))
        self.exit(0, signal=9)

    def is_alive(self) -> bool:
        return self._alive

    def exit(self, code: int, signal: int = 0) -> None:
        self._alive = False
        self.exit_code, self.exit_signal = code, signal
        self._box[0].worker_exited(self)


class FakeServer:
    """The public Server as callbacks receive it: only passed through here."""


@pytest.fixture
def supervisor():
    RecordingWorker.log = []
    reactor = Reactor("manager")
    state = SharedState(stat_slots=8, worker_slots=3, acceptors=1, capacity=8)
    errors = []
    callbacks = CallbackTable()
    callbacks.register("worker_error", lambda server, *args: errors.append(args))
    config = RunConfig(server=FakeServer(), settings={"max_wait_time": 0.2, "reload_async": False}, callbacks=callbacks, ports=[], roster=Roster(2, 1))
    box: list = []
    sup = Supervisor(config, state, reactor, lambda role, worker_id: RecordingWorker(worker_id, role, box))
    box.append(sup)
    yield sup, reactor, errors
    reactor.close()
    state.destroy()


def test_every_roster_id_starts_with_its_role_and_a_crash_is_reported_and_respawned(supervisor):
    sup, reactor, errors = supervisor
    sup.start_all()
    assert [(e[1], e[2]) for e in RecordingWorker.log] == [(0, EVENT), (1, EVENT), (2, TASK)]
    crashed = sup.workers[1]
    crashed.exit(1, signal=9)
    assert errors == [(1, crashed.pid, 1, 9)]
    run(reactor, 30)  # a crash within a second of the start is respawned after a short delay
    replacement = sup.workers[1]
    assert replacement is not crashed and replacement.role == EVENT and replacement.is_alive()


def test_a_rolling_reload_restarts_one_worker_at_a_time_and_a_second_reload_is_refused(supervisor):
    sup, reactor, errors = supervisor
    sup.start_all()
    RecordingWorker.log.clear()
    assert sup.reload() is True and sup.reload() is False
    for worker_id in (0, 1, 2):
        stops = [e for e in RecordingWorker.log if e[0] == "stop"]
        assert [e[1] for e in stops] == list(range(worker_id + 1))  # only this one so far
        old = sup.workers[worker_id]
        old.exit(0)  # it stopped as asked
        sup.worker_started(worker_id)  # its replacement ran worker_start
    assert errors == [] and sup.reload() is True  # finished: a new reload is accepted


def test_only_task_workers_are_reloaded_with_only_reload_taskworker(supervisor):
    sup, reactor, errors = supervisor
    sup.start_all()
    RecordingWorker.log.clear()
    assert sup.reload(True) is True
    assert [e[1] for e in RecordingWorker.log if e[0] == "stop"] == [2]


def test_a_worker_that_does_not_stop_in_time_is_killed(supervisor):
    sup, reactor, errors = supervisor
    sup.start_all()
    assert sup.stop_worker(0, False) is True and sup.stop_worker(7, False) is False
    run(reactor, 10)  # max_wait_time is 0.2 s
    assert ("kill", 0, RecordingWorker.log[0][3]) in RecordingWorker.log
    assert sup.workers[0].is_alive()  # and replaced


# -- dispatch modes and the event dispatcher --------------------------------------------------
class DispatchServer:
    setting: dict = {}


def test_dispatch_modes_map_events_to_workers():
    state = SharedState(stat_slots=2, worker_slots=4, acceptors=1, capacity=8)
    try:
        by_fd = dispatch.Dispatcher(DispatchServer(), {"dispatch_mode": 2}, state, 4)
        assert [by_fd.worker_for(s, "1.2.3.4", 0, dispatch.EVENT_DATA) for s in (1, 2, 5)] == [1, 2, 1]
        round_robin = dispatch.Dispatcher(DispatchServer(), {"dispatch_mode": 1}, state, 4)
        assert [round_robin.worker_for(9, "", 0, dispatch.EVENT_DATA) for _ in range(5)] == [0, 1, 2, 3, 0]
        assert round_robin.stateless and not round_robin.deliver_connect_close
        by_ip = dispatch.Dispatcher(DispatchServer(), {"dispatch_mode": 4}, state, 4)
        assert by_ip.worker_for(1, "10.0.0.6", 0, 0) == by_ip.worker_for(2, "10.0.0.6", 0, 0) == (10 << 24 | 6) % 4
        by_uid = dispatch.Dispatcher(DispatchServer(), {"dispatch_mode": 5}, state, 4)
        assert by_uid.worker_for(3, "", 0, 0) == 3 and by_uid.worker_for(3, "", 10, 0) == 2
        bad_func = dispatch.Dispatcher(DispatchServer(), {"dispatch_func": lambda *a: 99}, state, 4)
        assert bad_func.worker_for(6, "", 0, 0) == 2  # out of range: by session, logged
    finally:
        state.destroy()


def test_the_event_dispatcher_runs_receive_counts_it_and_survives_a_raising_callback():
    from threadswoole.workers.event_dispatcher import EventDispatcher, InlineSink
    from threadswoole.workers.runtime import Runtime

    state = SharedState(stat_slots=2, worker_slots=1, acceptors=1, capacity=8)
    counters = StatCounters(state, 0)
    try:
        runtime = Runtime(0, counters, max_request=0, grace=0, request_stop=lambda: None)
        calls = []

        def on_receive(server, fd, reactor_id, data):
            calls.append((fd, reactor_id, data))
            if data == b"boom":
                raise RuntimeError("a callback bug")

        listener = Listener(ApplicationProtocol())
        listener.is_stream = True
        listener.on_receive = on_receive
        dispatcher = EventDispatcher(FakeServer(), runtime, router=None, ports=[listener], callbacks=CallbackTable())
        sink = InlineSink(dispatcher, reactor_id=3)

        class Conn:
            session_id = 11

        Conn.listener = listener
        sink.on_data(Conn, b"hello")
        sink.on_data(Conn, b"boom")
        sink.on_data(Conn, b"after")
        assert calls == [(11, 3, b"hello"), (11, 3, b"boom"), (11, 3, b"after")]
        assert runtime.requests == 3 and counters.callback_errors == 1
    finally:
        counters.release()
        state.destroy()
