"""``threadswoole serve MODULE:ATTR``: any WSGI or ASGI application on threadswoole's server.

The application runs unmodified in any mode: BASE (prefork: each worker process accepts and
runs the application), PROCESS (the sockets live in the master: connections survive worker
restarts), THREAD (one process, one worker thread per core; every core on free-threaded
CPython). The HTTP/1.1 parsing is the same codec the native `threadswoole.http.Server` uses;
what differs is the handler that turns its events into application calls:

* `wsgi`: PEP 3333 (`WsgiProtocol`, `WsgiHandler`; environ in `environ`, the response in
  `wsgi_response`, streamed request bodies in `body`, the worker's application thread in
  `app_thread`);
* `asgi`: ASGI 3 `http`, `websocket` and `lifespan` scopes on one asyncio loop per worker
  (`asgi_loop` says how that loop shares the worker's thread with the reactor);
* `metrics`: ``/metrics`` (Prometheus text) and ``/stats`` (JSON) on an added listener, from
  shared-memory counters every worker writes;
* `config` / `cli` / `binds` / `runner`: options (flags, ``THREADSWOOLE_*`` variables, a TOML
  file), listeners (``HOST:PORT``, ``[::1]:PORT``, ``unix:PATH``, ``fd://N``, systemd socket
  activation) and the server that ties them together.

Layer 8 (the public API and the CLI): it imports the server, never the other way round (a
listener gets its protocol through the ``application_protocol`` setting).
"""
