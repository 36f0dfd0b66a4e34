"""Layer 2, the event loop: a `select.epoll` reactor per thread, its timer heap, its defer queue
and the wake-up socketpair other threads post work through.
May import: the standard library only (and threadswoole.errors / constants)."""
