"""A local stand-in for the Vertex AI REST API (CustomJobs) and the GCS JSON API, on 127.0.0.1.

Every CustomJob posted is parsed with aiplatform_v1's own proto type (unknown fields and bad
enum names answer 400), so the stub accepts only what the real API's schema accepts.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

JOBS = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/customJobs$")
JOB = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/customJobs/\d+)(:cancel)?$")


class Stub:
    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.objects: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.server.shutdown()
        self.server.server_close()

    def set_state(self, name: str, state: str) -> None:
        self.jobs[name]["state"] = state

    def _handler(stub):  # noqa: N805 - the handler closes over the stub
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body, ctype="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                u = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(u.query)
                stub.requests.append(("GET", u.path))
                if m := JOBS.match(u.path):
                    jobs = [j for n, j in stub.jobs.items() if n.startswith(m.group(1) + "/")]
                    f = re.search(r'display_name="([^"]+)"', q.get("filter", [""])[0])
                    if f:
                        jobs = [j for j in jobs if j["displayName"] == f.group(1)]
                    return self._send(200, {"customJobs": jobs})
                if (m := JOB.match(u.path)) and m.group(1) in stub.jobs:
                    return self._send(200, stub.jobs[m.group(1)])
                m = re.match(r"^(?:/download)?/storage/v1/b/([^/]+)/o(?:/(.+))?$", u.path)
                if m and m.group(2) is None:
                    prefix = q.get("prefix", [""])[0]
                    items = [{"name": k, "bucket": b, "size": str(len(v))} for (b, k), v in sorted(stub.objects.items())
                             if b == m.group(1) and k.startswith(prefix)]
                    return self._send(200, {"kind": "storage#objects", "items": items})
                if m:
                    key = (m.group(1), urllib.parse.unquote(m.group(2)))
                    if key not in stub.objects:
                        return self._send(404, {"error": {"code": 404, "message": "no such object"}})
                    data = stub.objects[key]
                    if q.get("alt") == ["media"]:
                        return self._send(200, data, "application/octet-stream")
                    return self._send(200, {"name": key[1], "bucket": key[0], "size": str(len(data))})
                return self._send(404, {"error": {"code": 404, "message": f"no {u.path}", "status": "NOT_FOUND"}})

            def do_POST(self):
                u = urllib.parse.urlparse(self.path)
                body = self._body()
                stub.requests.append(("POST", u.path))
                if m := JOBS.match(u.path):
                    from google.cloud.aiplatform_v1.types import CustomJob
                    try:
                        job = CustomJob.from_json(body.decode())  # the API's own schema
                    except Exception as e:  # noqa: BLE001
                        return self._send(400, {"error": {"code": 400, "message": str(e)[:300],
                                                          "status": "INVALID_ARGUMENT"}})
                    name = f"{m.group(1)}/customJobs/{1000 + len(stub.jobs)}"
                    d = json.loads(CustomJob.to_json(job, use_integers_for_enums=False))
                    d.update(name=name, state="JOB_STATE_PENDING",
                             createTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                    stub.jobs[name] = d
                    return self._send(200, d)
                if (m := JOB.match(u.path)) and m.group(2):
                    job = stub.jobs.get(m.group(1))
                    if job is None:
                        return self._send(404, {"error": {"code": 404, "message": "no job", "status": "NOT_FOUND"}})
                    if job["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                        return self._send(400, {"error": {"code": 400, "message": "job is finished",
                                                          "status": "FAILED_PRECONDITION"}})
                    job["state"] = "JOB_STATE_CANCELLING"
                    return self._send(200, {})
                m = re.match(r"^/upload/storage/v1/b/([^/]+)/o$", u.path)
                if m:  # multipart upload: JSON metadata part, then the media part
                    boundary = self.headers["Content-Type"].split("boundary=")[1].strip('"').encode()
                    parts = body.split(b"--" + boundary)
                    meta = json.loads(parts[1].split(b"\r\n\r\n", 1)[1].strip())
                    media = parts[2].split(b"\r\n\r\n", 1)[1][:-2]
                    stub.objects[(m.group(1), meta["name"])] = media
                    return self._send(200, {"name": meta["name"], "bucket": m.group(1), "size": str(len(media))})
                return self._send(404, {"error": {"code": 404, "message": f"no {u.path}", "status": "NOT_FOUND"}})
        return H
