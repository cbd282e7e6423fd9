"""A scripted OpenAI-compatible chat endpoint on 127.0.0.1 for the API tests (stdlib
``http.server`` in a thread, ephemeral port): what the ``api-*`` generators send, and what a
server may answer, without a model or a network."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable

#: ``handler(request body)``: a string is the message content of a 200 answer; a dict is the
#: whole body of a 200 answer; a ``(status, payload)`` pair is sent as it is
Handler = Callable[[dict], "str | dict | tuple[int, dict]"]


def completion(content: str, usage: tuple[int, int] = (10, 5)) -> dict:
    """The body of a chat completion whose one choice says ``content``."""
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                      "total_tokens": sum(usage)}}


class ChatServer:
    """Answers every POST with ``handler(body)`` after ``delay`` seconds; keeps every request
    body in ``bodies``.  Requests are read up to 1 MB.  Use as a context manager."""

    def __init__(self, handler: Handler, delay: float = 0.0, usage: tuple[int, int] = (10, 5)) -> None:
        self.bodies: list[dict] = []
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                n = min(int(self.headers.get("Content-Length", 0)), 1 << 20)
                body = json.loads(self.rfile.read(n) or b"{}")
                with lock:
                    outer.bodies.append(body)
                time.sleep(delay)
                answer = handler(body)
                if isinstance(answer, str):
                    status, payload = 200, completion(answer, usage)
                elif isinstance(answer, dict):
                    status, payload = 200, answer
                else:
                    status, payload = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"
