"""A local stand-in for the Kaggle API (only what kernels push/status/logs/output call).

Start with `KaggleStub()` (a thread on 127.0.0.1, a free port); point the kaggle client at it by
setting KAGGLE_API_ENVIRONMENT=LOCALHOST and the LOCAL endpoint to `stub.url` (kagglesdk builds
`{endpoint}/api/v1/<Service>/<Method>` there). Requests are recorded in `stub.calls`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class KaggleStub:
    def __init__(self, statuses=("RUNNING", "COMPLETE"), refuse: int | None = None):
        self.calls: list[tuple[str, str, dict, str]] = []   # (method, path, json body, auth header)
        self.statuses = list(statuses)
        self.refuse = refuse
        self.log_lines = ["launcher: single machine, 1 machine(s), rank 0", "step 10 loss 0.61", "done"]
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, obj, ctype="application/json"):
                body = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                stub.calls.append(("POST", self.path, body, self.headers.get("Authorization", "")))
                if stub.refuse:
                    return self._send(stub.refuse, {"code": stub.refuse, "message": "Unauthenticated"})
                method = self.path.rsplit("/", 1)[-1]
                if method == "SaveKernel":
                    slug = body.get("slug", "")
                    return self._send(200, {"ref": f"/code/{slug}", "url": f"https://www.kaggle.com/code/{slug}",
                                            "versionNumber": 1})
                if method == "GetKernelSessionStatus":
                    st = stub.statuses.pop(0) if len(stub.statuses) > 1 else stub.statuses[0]
                    return self._send(200, {"status": st, "failureMessage": ""})
                if method == "ListKernelSessionOutput":
                    return self._send(200, {"files": [], "log": "\n".join(stub.log_lines)})
                return self._send(404, {"code": 404, "message": f"no {method} in the stub"})

            def do_GET(self):
                stub.calls.append(("GET", self.path, {}, self.headers.get("Authorization", "")))
                if "/kernels/logs/stream/" in self.path:
                    events = [{"stream_name": "stdout", "time": i, "data": ln + "\n"}
                              for i, ln in enumerate(stub.log_lines)]
                    return self._send(200, events)
                return self._send(404, {"code": 404, "message": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def methods(self) -> list[str]:
        return [p.rsplit("/", 1)[-1] for _, p, _, _ in self.calls]
