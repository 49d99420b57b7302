#!/usr/bin/env python3
"""A webhook receiver for sentinel/tests/alerts.rs: verifies every request
with the `standardwebhooks` library (the reference implementation of the
Standard Webhooks spec, from PyPI) and appends one JSON line per request to
a log file.

    webhook_receiver.py PORT SECRETS_FILE LOG_FILE

Paths:
  /hook   verify; 204 if the signature holds, 400 if not
  /gone   410 Gone (the endpoint was removed)
  /busy   429 with Retry-After: 1 for the first request of each webhook-id
          and body (sentinels alerting on one incident send one id, each its
          own body), then as /hook
Stops on SIGTERM.
"""
import hashlib
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT, SECRETS, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
secret = next(
    line.strip() for line in open(SECRETS) if line.strip() and not line.startswith("#")
)
hook = Webhook(secret)
seen_busy = set()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        wid = headers.get("webhook-id", "")
        key = wid + "/" + hashlib.sha256(body).hexdigest()
        record = {"path": self.path, "id": wid, "key": key, "at": time.time()}
        if self.path == "/gone":
            status = 410
        elif self.path == "/busy" and key not in seen_busy:
            seen_busy.add(key)
            status = 429
        else:
            try:
                payload = hook.verify(body, headers)
                record["verified"] = True
                record["payload"] = payload
                status = 204
            except WebhookVerificationError as e:
                record["verified"] = False
                record["error"] = str(e)
                status = 400
        record["status"] = status
        with open(LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "1")
        self.send_header("content-length", "0")
        self.end_headers()


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
print("listening", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
server.server_close()
