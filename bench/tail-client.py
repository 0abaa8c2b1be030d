"""One sequential HTTP/1.1 caller for bench/tail.ts: keep-alive, TCP_NODELAY, raw socket (no
client library in the way). Usage: tail-client.py HOST PORT N PATH BODY_FILE HEADER_LEN|-
Prints [[start_ms, ms], ...] on CLOCK_MONOTONIC (the server probe's clock), after 200 warm-up calls."""
import json
import socket
import sys
import time

host, port, n, path, body_file, hlen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
body = open(body_file, "rb").read()
extra = ("Inference-Header-Content-Length: " + hlen) if hlen != "-" else "Content-Type: application/json"
req = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n\r\n".encode() + body
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def call():
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(head[:300].decode(errors="replace"))
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(rest) < length:
        rest += s.recv(65536)


for _ in range(200):
    call()
res = []
for _ in range(n):
    t = time.monotonic_ns()
    call()
    res.append((t / 1e6, (time.monotonic_ns() - t) / 1e6))
print(json.dumps(res))
