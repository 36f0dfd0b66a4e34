"""Client for process_http.sh: wait for the server, send N keep-alive GETs (`batch` per write),
read every answer, then SIGTERM the server pid. argv: port n batch pid"""
import os, signal, socket, sys, time
port, n, batch, pid = (int(x) for x in sys.argv[1:5])
REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
deadline = time.time() + 120
while True:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
# one warm-up request in both runs (N=0 too), so first-request costs cancel out
def exchange(count):
    sock.sendall(REQ * count)
    got = b""
    while got.count(b"Hello, World!") < count:
        data = sock.recv(65536)
        assert data, "closed"
        got += data
exchange(1)
done = 0
while done < n:
    k = min(batch, n - done)
    exchange(k)
    done += k
sock.close()
time.sleep(0.5)
os.kill(pid, signal.SIGTERM)
