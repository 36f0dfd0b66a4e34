"""Conformance suites run against threadswoole's protocol servers (tools, not part of the package)."""
