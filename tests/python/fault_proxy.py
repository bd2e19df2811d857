"""An HTTP proxy on loopback that forwards to an S3 endpoint and injects faults: latency,
connection resets, HTTP 503, uploads that reach the store but whose response is dropped, and
downloads cut partway (the headers promise the whole body, half of it arrives, then a reset).
Usage: fault_proxy.py LISTEN_PORT UPSTREAM_PORT SEED. One fault in FAULT_EVERY requests."""

import http.client
import random
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT_EVERY = 8


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        fault = rng.randrange(FAULT_EVERY) == 0 and rng.choice(["latency", "reset", "503", "drop", "cut"])
        if fault == "latency":
            time.sleep(rng.uniform(0.05, 0.5))
        if fault == "reset":
            # RST instead of FIN: the client sees "connection reset by peer".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            self.close_connection = True
            return
        if fault == "503":
            msg = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        resp = upstream.getresponse()
        data = resp.read()
        upstream.close()
        if fault == "drop" and self.command in ("PUT", "POST"):
            # The write happened upstream; the client never hears about it.
            self.connection.close()
            self.close_connection = True
            return
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "cut" and self.command == "GET" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            self.close_connection = True
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


if __name__ == "__main__":
    port, UPSTREAM, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    ThreadingHTTPServer(("127.0.0.1", port), Proxy).serve_forever()
