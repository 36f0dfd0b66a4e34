"""The command line: `threadswoole demo` (a TCP echo server to try threadswoole with no set-up at
all) and `threadswoole serve MODULE:ATTR` (a WSGI or ASGI application; see threadswoole.serve)."""

from __future__ import annotations

import argparse
import sys

from threadswoole import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_THREAD, Server

MODES = {"base": SWOOLE_BASE, "process": SWOOLE_PROCESS, "thread": SWOOLE_THREAD}


def demo(host: str, port: int, mode: str, workers: int) -> bool:
    server = Server(host, port, MODES[mode])
    server.set({"worker_num": workers})

    def on_start(srv: Server) -> None:
        print(f"threadswoole echo server ({mode} mode, {workers} worker(s)) on {host}:{srv.ports[0].port}")
        print(f"  talk to it:  nc {host} {srv.ports[0].port}   (or: python -c \"import socket; s=socket.create_connection(('{host}', {srv.ports[0].port})); s.sendall(b'hi'); print(s.recv(99))\")")
        print("  stop it:     Ctrl-C", flush=True)

    def on_receive(srv: Server, fd: int, reactor_id: int, data: bytes) -> None:
        srv.send(fd, data)

    server.on("start", on_start)
    server.on("receive", on_receive)
    return server.start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="threadswoole", description="threadswoole command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run a TCP echo server")
    demo_parser.add_argument("--host", default="127.0.0.1")
    demo_parser.add_argument("--port", type=int, default=9501)
    demo_parser.add_argument("--mode", choices=sorted(MODES), default="base")
    demo_parser.add_argument("--workers", type=int, default=1)
    from threadswoole.serve import cli as serve_cli

    serve_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return 0 if demo(args.host, args.port, args.mode, args.workers) else 1
    if args.command == "serve":
        return serve_cli.run_arguments(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
