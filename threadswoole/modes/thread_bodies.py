"""SWOOLE_THREAD: the threads of task workers and user processes, and how messages reach the
threads that have no mailbox (event workers, the manager). A mixin of ThreadDriver.

Task workers and user processes read mailbox sockets as in the process modes (made by the
driver before any thread starts); event worker threads are reached through the driver's
`deliver` (their command queue, which also holds messages while the id restarts), the manager
thread through its loop.
"""

from __future__ import annotations

import os
from typing import Any

from threadswoole import _context
from threadswoole.ipc import messages
from threadswoole.workers.event_worker import check_message_target
from threadswoole.workers.remote_router import pickled
from threadswoole.workers.roster import MANAGER
from threadswoole.workers.worker import ThreadWorker


class ThreadBodies:
    """Mixin: ThreadDriver's task-worker and user-process threads, `deliver_to`, `send_message`."""

    def _task_main(self, thread_worker: ThreadWorker) -> int:
        """Body of a task worker thread (it reads its mailbox socket as in the process modes)."""
        worker_id = thread_worker.worker_id

        def notify(op: int, payload: bytes) -> None:
            assert self.manager_reactor is not None and self.supervisor is not None
            self.manager_reactor.post(self.supervisor.handle_message, op, worker_id, 0, payload)

        return self.run_thread_body(thread_worker, self.new_task_worker(worker_id, in_thread=True, notify=notify))

    def _user_main(self, thread_worker: ThreadWorker) -> int:
        """Body of a user-process thread: the Process callback on the child end of its pipe."""
        process = self.process_of(thread_worker.worker_id)
        process.enter_thread()  # this thread talks on the child end; the workers keep the other
        process.pid = os.getpid()  # contract §16: a THREAD-mode user process is a thread of the master
        return self.run_thread_body(thread_worker, self.new_user_process(thread_worker.worker_id, in_thread=True))

    def deliver_to(self, target: int, message: tuple) -> bool:
        """Transport for ids without a socket: event worker threads and the manager thread."""
        if target == MANAGER:
            assert self.manager_reactor is not None
            self.manager_reactor.post(self._manager_post, message)
            return True
        if 0 <= target < self.worker_num:
            return self.deliver(target, message)
        raise LookupError(f"no mailbox {target}")

    def _manager_post(self, message: tuple) -> None:
        type_, _flags, port, _reactor, src, session, payload = message
        self.manager_command(type_, src, session, port, payload)

    def send_message(self, message: Any, worker_id: int) -> bool:
        """From an event worker thread: a pickled copy in every mode (contract R4), to another
        event worker's queue or to the mailbox of a task worker or user process."""
        check_message_target(self.config, worker_id)
        payload = pickled(message, "send_message")
        if worker_id < self.worker_num:
            return self.deliver(worker_id, (messages.T_PIPE_MESSAGE, 0, 0, 0, _context.current().worker_id, 0, payload))
        return _context.current().worker_obj.transport.post(worker_id, messages.T_PIPE_MESSAGE, 0, payload)

    @staticmethod
    def stop_user_thread(thread_worker: ThreadWorker, runner: Any) -> None:
        """Shutdown of a THREAD-mode user process (see UserProcess.interrupt)."""
        thread = thread_worker.thread
        if thread is not None and thread.ident is not None:
            runner.interrupt(thread.ident)
