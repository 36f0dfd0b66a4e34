"""Echo servers started as subprocesses by the benchmark: peers and the server under test.

Each is run as ``python -m stress.servers.<name> --host H --port P [options]``,
prints ``READY <port>`` once it accepts connections and exits on SIGTERM/SIGINT.
"""
