"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: scripted replies, recorded requests.

Usage as a context manager::

    from tests.support.openai_server import FakeOpenAI

    with FakeOpenAI(replies=["Thought: look\\nCode:\\n```py\\nfinal_answer('cat')\\n```<end_action>"]) as server:
        model = OpenAICompatModel("mat-test", base_url=server.url, api_key="sk-test")
        ...
        body = server.requests[-1].body            # the JSON the client sent
        server.requests[-1].headers["authorization"]  # "Bearer sk-test"

or as the pytest fixture ``openai_server`` (registered in tests/conftest.py): a fresh started server per test.

Endpoints: ``POST /v1/chat/completions`` (``stream`` true -> server-sent events ``data: {...}`` in several
chunks, a usage chunk when ``stream_options.include_usage`` is set, then ``data: [DONE]``; false -> one JSON
answer with usage) and ``GET /v1/models``.

What it answers: the next item of ``replies`` (a queue; ``server.replies.append(...)`` adds more), else
``responder(body) -> str`` when given, else ``"OK"``. A reply is cut at the first of the request's ``stop``
strings, as real servers do, unless ``ignore_stop`` is set (then the whole text, stop strings included).

Knobs, all plain attributes that can be changed while it runs:
``fail_next(n, status=429)`` fails the next n chat requests; ``latency`` seconds before answering;
``chunk_delay`` seconds between streamed chunks; ``api_key`` -> 401 for any other bearer token;
``models`` -> 404 for a model not in the list (None accepts any model and lists "mat-test");
``reject_stream_options`` -> 400 when the client sends ``stream_options`` (like some older servers);
``one_at_a_time`` -> chat requests are served one after another, as a local model serves them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Recorded:
    """One request as the server saw it; `usage` is what the server reported back for it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict
    status: int = 200
    usage: dict = field(default_factory=dict)
    received: float = field(default_factory=time.monotonic)

    @property
    def image_urls(self) -> list[str]:
        """Every image URL in the request's messages, in order."""
        urls = []
        for message in self.body.get("messages", []):
            if isinstance(message.get("content"), list):
                urls += [p["image_url"]["url"] for p in message["content"] if p.get("type") == "image_url"]
        return urls


def _count_tokens(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def _prompt_tokens(body: dict) -> int:
    total = 0
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            total += _count_tokens(content)
        else:
            for part in content or []:
                total += _count_tokens(part.get("text", "")) if part.get("type") == "text" else 64
    return total


class FakeOpenAI:
    """The server; see the module docstring. Beside those knobs: `retry_after` (seconds) is sent as the
    Retry-After header of scripted failures and `failure_message` replaces their error message;
    `cut_next` ends replies early and `die_mid_reply` kills the server halfway through one."""

    def __init__(
        self,
        replies: list[str] | None = None,
        *,
        responder: Callable[[dict], str] | None = None,
        models: list[str] | None = None,
        api_key: str | None = None,
        ignore_stop: bool = False,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        reject_stream_options: bool = False,
        one_at_a_time: bool = False,
    ) -> None:
        self.replies: deque[str] = deque(replies or [])
        self.responder = responder
        self.models = models
        self.api_key = api_key
        self.ignore_stop = ignore_stop
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.reject_stream_options = reject_stream_options
        self.one_at_a_time = one_at_a_time
        self._serving = threading.Lock()
        self.requests: list[Recorded] = []
        self._failures: deque[int] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.retry_after: float | None = None
        self.failure_message: str | None = None
        self._cuts: deque[tuple[int, bool]] = deque()

    @property
    def url(self) -> str:
        """The base URL to give a client, ending in /v1."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def fail_next(self, n: int, status: int = 429) -> None:
        """Answer the next `n` chat requests with `status` (429, 500, 503, ...)."""
        with self._lock:
            self._failures.extend([status] * n)

    def cut_next(self, n: int, after: int = 2) -> None:
        """End the next `n` chat replies early, as a proxy or a crashed worker does: a stream after `after`
        chunks, without finish_reason or [DONE]; a JSON answer halfway. The connection is closed."""
        with self._lock:
            self._cuts.extend([(after, False)] * n)

    def die_mid_reply(self, after: int = 2) -> None:
        """The next chat reply stops after `after` chunks (a JSON answer halfway) because the server dies:
        that connection is reset and every later one refused."""
        with self._lock:
            self._cuts.append((after, True))

    def next_cut(self) -> tuple[int, bool] | None:
        with self._lock:
            return self._cuts.popleft() if self._cuts else None

    def die(self) -> None:
        """Stop listening at once: connections from now on are refused."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def start(self) -> FakeOpenAI:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def next_reply(self, body: dict) -> str:
        with self._lock:
            if self.replies:
                text = self.replies.popleft()
            elif self.responder is not None:
                text = None
            else:
                text = "OK"
        if text is None:
            text = self.responder(body)
        if self.ignore_stop:
            return text
        cuts = [i for i in (text.find(s) for s in body.get("stop") or []) if i >= 0]
        return text[: min(cuts)] if cuts else text

    def turn(self) -> contextlib.AbstractContextManager:
        """Held while a chat request is answered: the serving lock in one-at-a-time mode."""
        return self._serving if self.one_at_a_time else contextlib.nullcontext()

    def next_failure(self) -> int | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None


def _chunks(text: str, size: int = 7) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _error_body(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _handler_for(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _record(self, body: dict) -> Recorded:
            recorded = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            with server._lock:
                server.requests.append(recorded)
            return recorded

        def _json(self, recorded: Recorded, status: int, payload: dict, headers: dict | None = None) -> None:
            recorded.status = status
            data = json.dumps(payload).encode()
            cut = server.next_cut() if payload.get("object") == "chat.completion" else None
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if cut is None:
                self.wfile.write(data)
            else:
                self.wfile.write(data[: len(data) // 2])
                self._end_early(dies=cut[1])

        def _end_early(self, dies: bool) -> None:
            """Close the reply where it stands; a dying server resets the connection after it stops listening."""
            self.close_connection = True
            if dies:
                server.die()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

        def _refusal(self, recorded: Recorded) -> tuple[int, dict] | tuple[int, dict, dict] | None:
            """Why this request is refused, if it is: key, model, option, scripted failure."""
            if server.api_key and recorded.headers.get("authorization") != f"Bearer {server.api_key}":
                return 401, _error_body("Incorrect API key provided.", "invalid_api_key")
            model = recorded.body.get("model")
            if server.models is not None and model not in server.models:
                return 404, _error_body(f"The model `{model}` does not exist.", "model_not_found")
            if server.reject_stream_options and "stream_options" in recorded.body:
                message = "Unrecognized request argument supplied: stream_options"
                return 400, _error_body(message, "invalid_request_error")
            failure = server.next_failure()
            if failure is not None:
                message = server.failure_message or f"scripted failure {failure}"
                headers = {"Retry-After": f"{server.retry_after:g}"} if server.retry_after is not None else {}
                return failure, _error_body(message, "server_error"), headers
            return None

        def do_GET(self) -> None:
            recorded = self._record({})
            if self.path.rstrip("/") != "/v1/models":
                return self._json(recorded, 404, _error_body(f"no route {self.path}", "not_found"))
            ids = server.models if server.models is not None else ["mat-test"]
            data = [{"id": i, "object": "model", "created": 0, "owned_by": "test"} for i in ids]
            self._json(recorded, 200, {"object": "list", "data": data})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            recorded = self._record(body)
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._json(recorded, 404, _error_body(f"no route {self.path}", "not_found"))
            refusal = self._refusal(recorded)
            if refusal is not None:
                return self._json(recorded, *refusal)
            with server.turn():
                time.sleep(server.latency)
                text = server.next_reply(body)
                recorded.usage = {"prompt_tokens": _prompt_tokens(body), "completion_tokens": _count_tokens(text)}
                recorded.usage["total_tokens"] = sum(recorded.usage.values())
                if body.get("stream"):
                    self._stream(recorded, text)
                else:
                    message = {"role": "assistant", "content": text}
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    envelope = self._envelope(recorded, "chat.completion", [choice], usage=recorded.usage)
                    self._json(recorded, 200, envelope)

        def _envelope(self, recorded: Recorded, kind: str, choices: list[dict], **extra) -> dict:
            model = recorded.body.get("model") or "mat-test"
            envelope = {"id": "chatcmpl-test", "object": kind, "created": int(time.time()), "model": model}
            return {**envelope, "choices": choices, **extra}

        def _stream(self, recorded: Recorded, text: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            delta = {"role": "assistant"}
            events = [{"index": 0, "delta": {**delta, "content": p}, "finish_reason": None} for p in _chunks(text)]
            events.append({"index": 0, "delta": {}, "finish_reason": "stop"})
            cut = server.next_cut()
            try:
                for sent, choice in enumerate(events):
                    if cut is not None and sent == cut[0]:
                        return self._end_early(dies=cut[1])
                    self._send_event(self._envelope(recorded, "chat.completion.chunk", [choice]))
                    time.sleep(server.chunk_delay)
                if (recorded.body.get("stream_options") or {}).get("include_usage"):
                    self._send_event(self._envelope(recorded, "chat.completion.chunk", [], usage=recorded.usage))
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading early, as a stop button does

        def _send_event(self, payload: dict) -> None:
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

    return Handler


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    """A started FakeOpenAI with an empty reply queue; stopped after the test."""
    with FakeOpenAI() as server:
        yield server


@contextmanager
def unreachable_url() -> Iterator[str]:
    """A base URL where connecting hangs, as for a host behind a firewall that drops packets: a port whose
    accept queue is full, so the kernel ignores new connection requests."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(address)
    time.sleep(0.1)
    try:
        yield f"http://{address[0]}:{address[1]}/v1"
    finally:
        for sock in (*fillers, listener):
            sock.close()
