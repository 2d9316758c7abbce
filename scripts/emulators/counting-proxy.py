#!/usr/bin/env python3
"""Loopback proxy in front of an object-store emulator that counts the
requests passing through it, by kind, for tests and benchmarks that measure
requests per deleted object (stdlib only).

usage: counting-proxy.py [--listen 127.0.0.1:0] --backend 127.0.0.1:9000

It prints `listening on PORT` once it accepts connections (port 0 picks a
free one). Every request is forwarded unchanged (the Host header included,
so signatures still match) except two of its own:
  GET  /_counts        the counts so far, as JSON: {"list": N, "head": N, ...}
  GET  /_times         the seconds the backend took to answer, summed by kind
  GET  /_peaks         the most requests of each kind in flight at once
  POST /_counts/reset  sets all three to zero
  POST /_faults        JSON {"delay": {KIND: SECONDS}, "slowdown": N}: waits
                       that long before forwarding each request of KIND, and
                       answers the next N S3 DeleteObjects requests itself,
                       HTTP 200 with a SlowDown error for every key (as S3
                       does when a prefix is over its request rate), deleting
                       nothing
Kinds: list (S3 ListObjects, Azure List Blobs, GCS objects list), head, get,
delete-batch (S3 DeleteObjects, Azure blob batch), delete (one object), put,
other (bucket settings, probes).
"""
import argparse
import http.client
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
_local = threading.local()
_lock = threading.Lock()
COUNTS = {}
TIMES = {}
PEAKS = {}
ACTIVE = {}
FAULTS = {"delay": {}, "slowdown": 0}


def kind(method, path):
    u = urllib.parse.urlsplit(path)
    q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    segments = [s for s in u.path.split("/") if s]
    if method == "HEAD":
        return "head"
    if method == "GET":
        if "list-type" in q or q.get("comp") == ["list"]:
            return "list"
        # GCS JSON API: GET /storage/v1/b/BUCKET/o
        if segments[:3] == ["storage", "v1", "b"] and len(segments) == 5 and segments[4] == "o":
            return "list"
        if q.keys() & {"versioning", "location", "restype", "comp", "fields"}:
            return "other"
        if len(segments) <= 1:
            return "list"
        return "get"
    if method == "POST" and ("delete" in q or q.get("comp") == ["batch"]):
        return "delete-batch"
    if method == "DELETE":
        return "delete"
    if method == "PUT":
        return "put"
    return "other"


def backend_conn(backend):
    c = getattr(_local, "conn", None)
    if c is None:
        host, port = backend.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=120)
        _local.conn = c
    return c


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    backend = "127.0.0.1:9000"

    def log_message(self, *a):
        pass

    def _send(self, status, headers, data, method):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def _handle(self):
        if self.path.startswith("/_faults"):
            n = int(self.headers.get("Content-Length") or 0)
            asked = json.loads(self.rfile.read(n) or b"{}")
            with _lock:
                FAULTS["delay"] = dict(asked.get("delay", {}))
                FAULTS["slowdown"] = int(asked.get("slowdown", 0))
            return self._send(200, [("Content-Type", "application/json")], b"{}", "GET")
        if self.path.startswith(("/_counts", "/_times", "/_peaks")):
            with _lock:
                if self.command == "POST":
                    COUNTS.clear()
                    TIMES.clear()
                    PEAKS.clear()
                shown = {"/_times": TIMES, "/_peaks": PEAKS}.get(self.path.split("?")[0], COUNTS)
                body = json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                   for k, v in shown.items()}, sort_keys=True).encode()
            return self._send(200, [("Content-Type", "application/json")], body, "GET")
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        with _lock:
            k = kind(self.command, self.path)
            COUNTS[k] = COUNTS.get(k, 0) + 1
            ACTIVE[k] = ACTIVE.get(k, 0) + 1
            PEAKS[k] = max(PEAKS.get(k, 0), ACTIVE[k])
            delay = FAULTS["delay"].get(k, 0)
            slowdown = k == "delete-batch" and "delete" in self.path and FAULTS["slowdown"] > 0
            if slowdown:
                FAULTS["slowdown"] -= 1
        try:
            if delay:
                time.sleep(delay)
            if slowdown:
                return self._slowdown(body)
            self._forward(k, body, headers)
        finally:
            with _lock:
                ACTIVE[k] -= 1

    def _slowdown(self, body):
        keys = re.findall(rb"<Key>(.*?)</Key>", body, re.S)
        errors = "".join(
            "<Error><Key>%s</Key><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            % k.decode() for k in keys)  # as sent: already XML-escaped
        xml = ('<?xml version="1.0" encoding="UTF-8"?>'
               '<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">%s</DeleteResult>' % errors).encode()
        self._send(200, [("Content-Type", "application/xml")], xml, "POST")

    def _forward(self, k, body, headers):
        started = time.monotonic()
        for attempt in (0, 1):  # one retry on a stale pooled connection
            c = backend_conn(self.backend)
            try:
                c.request(self.command, self.path,
                          body=body if body or self.command in ("PUT", "POST") else None,
                          headers=headers)
                r = c.getresponse()
                status, rh, data = r.status, r.getheaders(), r.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                c.close()
                _local.conn = None
                if attempt:
                    raise
        with _lock:
            TIMES[k] = TIMES.get(k, 0.0) + time.monotonic() - started
        self._send(status, rh, data, self.command)

    do_GET = do_HEAD = do_DELETE = do_POST = do_PUT = do_PATCH = _handle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--backend", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("refusing to listen on a non-loopback address")
    bhost = a.backend.rsplit(":", 1)[0]
    if bhost not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("refusing to forward to a non-loopback address")
    Handler.backend = a.backend
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    print(f"listening on {srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
