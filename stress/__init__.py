"""Stress and benchmark tooling for threadswoole (load generator, peer servers, suite)."""
