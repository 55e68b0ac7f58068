"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers from a script, for the planner's tests and the
fault bench. Only the process boundary is faked: the openai client, its transport and our retries run for real."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def words(text: str) -> int:
    return len(text.split())


class ScriptedLLMServer:
    """Replies in order; the last one repeats. `requests` keeps every request body received.

    `refuse_formats` are response_format types the server answers with HTTP 400 naming response_format, as
    servers without structured output do (an older vLLM, llama.cpp, many proxies); a refusal uses up no
    scripted reply. Token counts in `usage` are word counts: enough to tell prompt from completion."""

    def __init__(self, replies: list[Reply], refuse_formats: tuple[str, ...] = ()) -> None:
        self.replies, self.requests, self.refuse_formats = list(replies), [], refuse_formats
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"body": body, "headers": dict(self.headers)})
                fmt = body.get("response_format", {}).get("type")
                if fmt in server.refuse_formats:
                    reply = Reply(status=400, content=f"response_format type {fmt!r} is not supported")
                else:
                    reply = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                time.sleep(reply.delay_s)
                if reply.status == 200:
                    payload = {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": reply.content},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": sum(words(m["content"]) for m in body["messages"]),
                            "completion_tokens": words(reply.content),
                            "total_tokens": 0,
                        },
                    }
                else:
                    payload = {"error": {"message": reply.content or f"scripted {reply.status}", "type": "error"}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # A short poll interval: shutdown() waits for one, and every planner test stops a server.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> ScriptedLLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def plan_json(instruction: str = "Make it look like a pencil sketch.", category: str = "global_style") -> str:
    return json.dumps(
        {
            "instruction": instruction,
            "category": category,
            "target_description": "A rabbit in a meadow, drawn in pencil.",
        }
    )
