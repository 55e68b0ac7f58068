"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers from a script, or by what each request asks
(`answer`), for the tests of the planner, captioner and judges at an endpoint and for the fault bench. Only the
process boundary is faked: the openai client, its transport and our retries run for real. It keeps every request,
so a test can read the images a vision-language request carried (`images_in`)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def text_of(content: str | list[dict[str, Any]]) -> str:
    """A message's text: the whole content, or its text parts (the rest are images)."""
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content if part.get("type") == "text")


def words(text: str) -> int:
    return len(text.split())


def images_in(body: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """Every image a request carried, in order: (its MIME type, its RGB pixels decoded from the data URL). Raises
    ValueError on an image part that is not a base64 data URL of a PNG or JPEG whose bytes say so."""
    found = []
    for message in body["messages"]:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part.get("type") != "image_url":
                continue
            head, _, data = part["image_url"]["url"].partition(";base64,")
            raw = base64.b64decode(data, validate=True)
            mime = head.removeprefix("data:")
            magic = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}.get(mime)
            if magic is None or not raw.startswith(magic):
                raise ValueError(f"an image part that is not a PNG or JPEG data URL: {head[:40]!r}")
            bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            found.append((mime, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return found


def answer_schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asked its answer under (structured output), if any."""
    fmt = body.get("response_format") or {}
    return fmt.get("json_schema", {}).get("schema") if fmt.get("type") == "json_schema" else None


def fitting_answer(body: dict[str, Any], score: float = 9.0) -> Reply:
    """A valid answer to what the request asks, read from its schema: a verdict scoring every criterion of the
    rubric `score`, a caption, or a plan. What a well-behaved vision-language server answers."""
    schema = answer_schema_of(body) or {}
    properties = schema.get("properties", {})
    if "scores" in properties:
        scores = schema["$defs"][properties["scores"]["$ref"].split("/")[-1]]["properties"]
        answer: dict[str, Any] = {
            "scores": {name: score for name in scores},
            "reasons": {name: f"scored {score:g} by the scripted server" for name in scores},
        }
        return Reply(json.dumps(answer))
    if "caption" in properties:
        return Reply(json.dumps({"caption": "A short clip of a scene with some motion."}))
    return Reply(plan_json())


class ScriptedLLMServer:
    """Replies in order; the last one repeats. With `answer`, each reply is answer(request body) instead: the
    answer to what that request asks, whichever order concurrent callers come in. `requests` keeps every
    request body received.

    `refuse_formats` are response_format types the server answers with HTTP 400 naming response_format, as
    servers without structured output do (an older vLLM, llama.cpp, many proxies); a refusal uses up no
    scripted reply. Token counts in `usage` are word counts of the text: enough to tell prompt from completion."""

    def __init__(
        self,
        replies: list[Reply] = (),  # type: ignore[assignment]
        refuse_formats: tuple[str, ...] = (),
        answer: Callable[[dict[str, Any]], Reply] | None = None,
    ) -> None:
        self.replies, self.requests, self.refuse_formats, self.answer = list(replies), [], refuse_formats, answer
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"body": body, "headers": dict(self.headers)})
                fmt = body.get("response_format", {}).get("type")
                if fmt in server.refuse_formats:
                    reply = Reply(status=400, content=f"response_format type {fmt!r} is not supported")
                elif server.answer is not None:
                    reply = server.answer(body)
                else:
                    with server._lock:
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
                            "prompt_tokens": sum(words(text_of(m["content"])) for m in body["messages"]),
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
