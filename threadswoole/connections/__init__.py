"""Layer 4, connections: the per-socket `Connection`, the `Host` that owns one reactor's
connections (reading, codecs, writing, closing, heartbeat, TLS), the acceptor and listeners.
May import: protocol (1), loop (2), state (3: the shared connection records)."""
