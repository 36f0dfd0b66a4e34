"""What every forked child of a server does the same way: its signals, watching its parent,
and dropping privileges (`user`, `group`, `chroot`)."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, Callable

log = logging.getLogger("threadswoole")
WATCH_PARENT_MS = 1000
_forked_by = 0  # the server process that forked this one (forked_from); 0: not known


def forked_from(parent: int) -> None:
    """In a child, first thing after the fork: the pid of the process that forked it.

    watch_parent compares getppid() with it: a parent that died before the child looked
    (getppid() already names init or a subreaper) is still noticed."""
    global _forked_by
    _forked_by = parent


# The signals the master and the manager handle (stop, reload, SIGCHLD): blocked across a fork
# and while their handlers are not yet in place, unblocked in a child once it has its own.
MASTER_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD})


def child_signals(on_term: Callable[[], Any]) -> None:
    """In a forked worker: SIGTERM stops it gracefully, the master's signals are ignored."""
    signal.signal(signal.SIGTERM, lambda _s, _f: on_term())
    for signo in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signo, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, MASTER_SIGNALS)


def watch_parent(reactor: Any, on_orphaned: Callable[[], Any]) -> None:
    """In a forked child: stop when the parent (manager or master) is gone.

    A child outliving its parent would keep a listening socket or a mailbox open forever.
    The kernel's parent-death signal (prctl PR_SET_PDEATHSIG, through ctypes) sends us
    SIGTERM at once; a one-second getppid() check covers platforms without it and the
    parent dying before the prctl call. The parent is the pid recorded at the fork
    (forked_from), not getppid() now: if it died meanwhile, that is init's pid already,
    and the check never fired (an orphan kept the listening socket forever).
    """
    parent = _forked_by or os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    fired = []

    def check(_timer_id: int) -> None:
        if os.getppid() != parent and not fired:
            fired.append(True)
            log.warning("pid %d: the parent process %d is gone; stopping", os.getpid(), parent)
            on_orphaned()

    reactor.tick(WATCH_PARENT_MS, check)


def drop_privileges(settings: dict[str, Any]) -> None:
    """user / group / chroot for worker processes; effective only when started as root."""
    if os.geteuid() != 0:
        return
    chroot = settings.get("chroot")
    group = settings.get("group")
    user = settings.get("user")
    if chroot:
        os.chroot(chroot)
        os.chdir("/")
    if group:
        import grp

        os.setgid(grp.getgrnam(group).gr_gid)
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        if not group:
            os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
