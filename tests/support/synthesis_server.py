"""A local OpenAI-compatible server that answers every synthesis stage with valid output.

It tells the stages apart by their prompts (synthesis/prompts/*.txt; the agent by its system turn)
and can inject latency, 429s, 500s and timeouts. It also offers the Batch API routes the engine
uses (`/v1/files`, `/v1/files/{id}/content`, `/v1/batches`, `/v1/batches/{id}`).

Each request's `X-MAT-Request-Key` header is counted in `keys`, so a test can prove that no
answered request was sent twice. Run standalone for the benchmark or a manual try:

    python -m tests.support.synthesis_server --port 8765 --latency 0.2
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import itertools
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from synthesis.corpus import DEMO_CAPTIONS

OBJECTS = ("bicycles apples umbrellas candles chairs lamps bottles clocks kites helmets boats pumpkins books "
           "cups shoes hats keys guitars drums tents tractors owls rabbits horses cats dogs ducks bridges towers "
           "windows doors bells ladders coins stamps maps trains buses rockets").split()
PLACES = ("market harbor library garden kitchen museum station classroom forest beach stadium bakery office "
          "warehouse farm airport hospital theatre village castle desert island river canyon glacier").split()
QUESTIONS = (
    "How many {o} can be seen at the {p} in this file, and how many would remain if a third were removed?",
    "Estimate the total price of all the {o} listed for the {p}, given in the file.",
    "Which colour is most common among the {o} near the {p}, according to the file?",
    "Read the sign about {o} at the {p} and tell me the opening hours it gives.",
    "What share of the {o} recorded at the {p} were sold on the weekend, in percent?",
    "Find the largest of the {o} at the {p} and give its position in pixels.",
    "Compare the number of {o} in the two parts of the {p} shown and report the difference.",
    "Translate the label on the {o} at the {p} into French and count its words.",
)
KINDS = [["image"], ["image"], ["csv"], ["image", "txt"]]


def _query(serial: int, i: int) -> str:
    n = serial * 7 + i
    template = QUESTIONS[n % len(QUESTIONS)]
    return template.format(o=OBJECTS[(n // 3) % len(OBJECTS)], p=PLACES[(n // 5) % len(PLACES)])


def last_text(body: dict) -> str:
    """The text of the request's last message (the prompt of a one-shot stage)."""
    messages = body.get("messages") or []
    last = messages[-1]["content"] if messages else ""
    if isinstance(last, list):
        last = "".join(p.get("text", "") for p in last if p.get("type") == "text")
    return last


def answer(body: dict, serial: int, document_code: str | None = None, agent_code: str | None = None) -> str:
    """The reply a good model would give to this synthesis request."""
    messages = body.get("messages") or []
    last = last_text(body)
    if messages and messages[0]["role"] == "system":
        return _agent_step(last, agent_code)
    if last.startswith("You design tasks"):
        count = int(re.search(r"Write (\d+) new tasks", last).group(1))
        return json.dumps([{"query": f"Task {serial}-{i}: {_query(serial, i)}", "files": KINDS[(serial + i) % len(KINDS)]}
                           for i in range(count)])
    if last.startswith("You prepare the files"):
        types = re.search(r"File types the task needs: (.*)", last).group(1).split(", ")
        captions = list(DEMO_CAPTIONS.values())
        return json.dumps([
            {"type": t, "name": f"file{i}.{t}", "content": captions[(serial + i) % len(captions)]} if t == "image"
            else {"type": t, "name": f"data{i}.{t}", "content": "rows: apples 3, pears 5"}
            for i, t in enumerate(types)])
    if last.startswith("Write Python code that creates the file"):
        name = re.search(r"`([^`]+)`", last).group(1)
        if document_code is not None:
            return f"```py\nname = {name!r}\n{document_code}\n```"
        return f"```py\nwith open({name!r}, 'w') as f:\n    f.write('fruit,count\\napples,3\\npears,5\\n')\n```"
    if last.startswith("You check a task") or last.startswith("You check a trajectory"):
        return json.dumps({"thought": "The files fit the task and the steps are sound.", "correct": "yes"})
    return "OK"


def _agent_step(last: str, code: str | None = None) -> str:
    if "[OUTPUT OF STEP" not in last:
        code = code or "counts = {'apples': 3, 'pears': 5}\nprint(sum(counts.values()))"
        return f"Thought: I will count the objects with plain Python first.\nCode:\n```py\n{code}\n```<end_action>"
    return "Thought: The total is printed above.\nCode:\n```py\nfinal_answer('8')\n```<end_action>"


class _QuietServer(ThreadingHTTPServer):
    """A client that went away mid-answer (the tests kill runs with -9) is no error of the server's: it prints
    nothing onto the test's stderr, where a command's last line is read."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class SynthesisServer:
    """Knobs (change them while it runs): `latency` seconds per chat request; `fail_every`: every
    n-th chat request fails with `fail_status`, and so does every request for which `fail_when(body)` is
    true; `garble_when(body)`: answer that request with text no stage can use (a bad model answer);
    `document_code` replaces the code written for documents (it gets `name`); `agent_code` the agent's
    first step; `hang_every`: every n-th request answers only after `hang_seconds` (a client timeout);
    `batch_seconds` before a batch completes.

    What it saw: `keys` (below), `authorizations` (each request's Authorization header, or None),
    `received` (when each chat request arrived, time.monotonic())."""

    def __init__(self, *, latency: float = 0.0, port: int = 0) -> None:
        self.latency = latency
        self.fail_every = 0
        self.fail_status = 429
        self.fail_when: Callable[[dict], bool] | None = None
        self.garble_when: Callable[[dict], bool] | None = None
        self.document_code: str | None = None
        self.agent_code: str | None = None
        self.hang_every = 0
        self.hang_seconds = 5.0
        self.batch_seconds = 0.2
        self.keys: Counter = Counter()  # request key -> times a chat request carrying it was answered (200)
        self.chat_requests = 0
        self.authorizations: list[str | None] = []
        self.received: list[float] = []
        self.agent_requests: list[dict] = []  # bodies of the agent's step requests (system turn first)
        self.batch_lines = 0
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self._serial = itertools.count()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", port), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> SynthesisServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SynthesisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def chat(self, body: dict, key: str | None) -> tuple[int, dict, float]:
        """(status, payload, delay) for one chat request."""
        with self._lock:
            serial = next(self._serial)
            self.chat_requests += 1
            self.received.append(time.monotonic())
        failing = self.fail_when is not None and self.fail_when(body)
        if failing or (self.fail_every and serial % self.fail_every == self.fail_every - 1):
            return self.fail_status, {"error": {"message": "injected failure", "type": "server_error"}}, 0.0
        delay = self.hang_seconds if self.hang_every and serial % self.hang_every == self.hang_every - 1 \
            else self.latency
        garbled = self.garble_when is not None and self.garble_when(body)
        text = "I would rather not say." if garbled else answer(body, serial, self.document_code, self.agent_code)
        with self._lock:
            if (body.get("messages") or [{}])[0].get("role") == "system":
                self.agent_requests.append(body)
            if key:
                self.keys[key] += 1
        return 200, _completion(body, text), delay

    def create_batch(self, input_file_id: str) -> dict:
        batch_id = f"batch_{len(self.batches)}"
        lines = [json.loads(line) for line in self.files[input_file_id].decode().splitlines() if line.strip()]
        output = []
        for line in lines:
            with self._lock:
                serial = next(self._serial)
                self.batch_lines += 1
                self.keys[line["custom_id"]] += 1
            output.append({"custom_id": line["custom_id"],
                           "response": {"status_code": 200, "body": _completion(line["body"], answer(line["body"], serial))}})
        out_id = f"file-out-{batch_id}"
        self.files[out_id] = "\n".join(json.dumps(o) for o in output).encode()
        batch = {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": input_file_id,
                 "completion_window": "24h", "status": "in_progress", "created_at": int(time.time()),
                 "output_file_id": None, "error_file_id": None, "_ready_at": time.monotonic() + self.batch_seconds,
                 "_output": out_id}
        self.batches[batch_id] = batch
        return _public(batch)

    def get_batch(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        if time.monotonic() >= batch["_ready_at"]:
            batch.update(status="completed", output_file_id=batch["_output"])
        return _public(batch)


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _completion(body: dict, text: str) -> dict:
    prompt = json.dumps(body.get("messages"))
    return {"id": "chatcmpl-synth", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model") or "mat-test",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4,
                      "total_tokens": len(prompt) // 4 + len(text) // 4}}


def _handler(server: SynthesisServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, payload: dict | bytes, content_type: str = "application/json") -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def parse_request(self) -> bool:
            parsed = super().parse_request()
            if parsed:
                server.authorizations.append(self.headers.get("Authorization"))
            return parsed

        def do_GET(self) -> None:
            path = self.path.split("?")[0].rstrip("/")
            if path == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": "mat-test", "object": "model"}]})
            if found := re.fullmatch(r"/v1/batches/([\w-]+)", path):
                return self._send(200, server.get_batch(found.group(1)))
            if found := re.fullmatch(r"/v1/files/([\w-]+)/content", path):
                return self._send(200, server.files[found.group(1)], "application/octet-stream")
            self._send(404, {"error": {"message": f"no route {path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            path = self.path.split("?")[0].rstrip("/")
            if path == "/v1/chat/completions":
                status, payload, delay = server.chat(json.loads(raw or b"{}"), self.headers.get("X-MAT-Request-Key"))
                time.sleep(delay)
                return self._send(status, payload)
            if path == "/v1/files":
                file_id = f"file-{len(server.files)}"
                server.files[file_id] = _multipart_file(self.headers.get("Content-Type", ""), raw)
                return self._send(200, {"id": file_id, "object": "file", "purpose": "batch", "bytes": length,
                                        "created_at": int(time.time()), "filename": "requests.jsonl",
                                        "status": "processed"})
            if path == "/v1/batches":
                return self._send(200, server.create_batch(json.loads(raw)["input_file_id"]))
            self._send(404, {"error": {"message": f"no route {path}"}})

    return Handler


def _multipart_file(content_type: str, raw: bytes) -> bytes:
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    raise ValueError("no file part in the upload")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with SynthesisServer(latency=args.latency, port=args.port) as running:
        print(running.url, flush=True)
        threading.Event().wait()
