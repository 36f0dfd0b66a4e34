"""Layer 5, messages between processes and threads: the one message format and its datagram
mailboxes (batching, chunking), and PROCESS-mode redelivery of events a dead worker never answered.
May import: loop (2), state (3)."""
