"""Layer 4, shared state: the shared-memory segment (connection table, stats slots, worker
table, session counters), how segments are named, created and swept, and per-writer counters.
May import: the standard library only."""
