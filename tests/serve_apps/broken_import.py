"""An application module that fails at import time (tests/test_serve_config.py)."""

app = 1 / 0
