"""Client for process_http_conns.sh: `conns` keep-alive connections, each with one GET in
flight at a time (as wrk runs, not pipelined), until `n` answers came; then SIGTERM the
server pid. argv: port n conns pid"""
import os, selectors, signal, socket, sys, time
port, n, conns, pid = (int(x) for x in sys.argv[1:5])
REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
deadline = time.time() + 120
socks = []
while len(socks) < conns:
    try:
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=60))
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
for sock in socks:  # one warm-up request per connection in both runs (N=0 too)
    sock.sendall(REQ)
    got = b""
    while b"Hello, World!" not in got:
        got += sock.recv(65536)
sel = selectors.DefaultSelector()
for sock in socks:
    sock.setblocking(False)
    sel.register(sock, selectors.EVENT_READ)
sent = min(n, conns)
for sock in socks[:sent]:
    sock.send(REQ)
done = 0
while done < n:
    for key, _ in sel.select(60):
        data = key.fileobj.recv(65536)
        assert data, "closed"
        count = data.count(b"Hello, World!")
        done += count
        for _ in range(count):
            if sent < n:
                key.fileobj.send(REQ)
                sent += 1
for sock in socks:
    sock.close()
time.sleep(0.5)
os.kill(pid, signal.SIGTERM)
