"""Layer 3, shared state: the shared-memory segment (connection table, stats slots, worker
table, session counters), how segments are named, created and swept, per-writer counters, and
the segments of the users' Table, Atomic and Lock (`user_segments.py`).
May import: the standard library and the top-level helpers (`errors`, `_context`)."""
