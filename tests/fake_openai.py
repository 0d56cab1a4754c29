"""A fake OpenAI-compatible chat server (POST /v1/chat/completions) on 127.0.0.1 for the generator's tests.

It answers like vLLM, Ollama or OpenAI: server-sent events (``data: {...}`` chunks whose
``choices[0].delta.content`` carry the text, a last chunk with ``finish_reason: "stop"``, then
``data: [DONE]``) when the request asks to stream, one ``chat.completion`` JSON body otherwise. Replies are
scripted and consumed one per request (``fake.script(...)``; ``fake.default`` answers when the queue is
empty): a fixed text (or one computed from the request, to cite the number the prompt gave a PMID), an HTTP
error, a stream cut midway, an error event inside the stream, a stall. Every request is recorded (headers,
JSON body) so tests can assert what was sent.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tests.local_server import FakeHTTPServer, LocalServer

_SOURCE_TAG = re.compile(r'<source number="(\d+)" pmid="(\d+)">')


@dataclass
class ChatRequest:
    """What the server saw: path, headers (lower-case names) and the JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    reply: str = ""  # the kind of reply it got

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body.get("messages") or [])

    def content(self, role: str) -> str:
        return "\n".join(m.get("content", "") for m in self.messages if m.get("role") == role)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def sources(self) -> dict[int, int]:
        """PMID -> the source number the prompt gave it."""
        return {int(pmid): int(number) for number, pmid in _SOURCE_TAG.findall(self.content("user"))}

    def number(self, pmid: int) -> int:
        """The ``[n]`` a model would write to cite ``pmid``."""
        return self.sources[pmid]


Text = str | Callable[[ChatRequest], str]


@dataclass
class Reply:
    """One scripted answer. Build with the class methods."""

    kind: str
    text: Text = ""
    status: int = 200
    after: int = 0  # cut: content chunks sent before the connection drops
    chunked: bool = True  # cut: chunked body left incomplete (True), or a read-until-close body ended early
    seconds: float = 0.0
    stream: bool | None = None  # None: as the request asks; False: one JSON body even when asked to stream
    message: str = ""

    @classmethod
    def answer(cls, text: Text, *, stream: bool | None = None) -> Reply:
        """The model writes ``text`` (or ``text(request)``); ``stream=False`` plays a server that ignores
        ``"stream": true`` and sends one JSON body."""
        return cls("answer", text=text, stream=stream)

    @classmethod
    def error(cls, status: int = 500, message: str = "the model crashed") -> Reply:
        """HTTP ``status`` with an OpenAI-style error body that (like a careless proxy) echoes the
        request's Authorization header."""
        return cls("error", status=status, message=message)

    @classmethod
    def cut(cls, text: Text, *, after: int = 2, chunked: bool = True) -> Reply:
        """Start streaming ``text``, then close the connection after ``after`` content chunks: no
        finish_reason, no ``[DONE]``."""
        return cls("cut", text=text, after=after, chunked=chunked)

    @classmethod
    def interrupted(cls, text: Text, *, after: int = 2) -> Reply:
        """Stream ``after`` content chunks, then ``[DONE]`` with no finish_reason and a well-closed body:
        how llama-cpp-python's server ends an answer it interrupts for another request."""
        return cls("interrupted", text=text, after=after)

    @classmethod
    def empty_stream(cls) -> Reply:
        """200, ``text/event-stream``, and a body that ends before any event: how llama-cpp-python answers
        a streaming request whose prompt does not fit its context (the error stays in its log)."""
        return cls("empty_stream")

    @classmethod
    def stream_error(cls, message: str = "model overloaded") -> Reply:
        """200 and a stream whose first event is ``{"error": {...}}``."""
        return cls("stream_error", message=message)

    @classmethod
    def stall(cls, seconds: float = 30.0) -> Reply:
        """Say nothing for ``seconds`` (or until the server stops), then answer "INSUFFICIENT EVIDENCE"."""
        return cls("stall", text="INSUFFICIENT EVIDENCE", seconds=seconds)


@dataclass
class FakeOpenAI(LocalServer):
    """``with FakeOpenAI() as fake: ...``; ``fake.url`` is the API base URL (ends in /v1)."""

    default: Reply = field(default_factory=lambda: Reply.answer("INSUFFICIENT EVIDENCE"))
    requests: list[ChatRequest] = field(default_factory=list)
    replies: deque[Reply] = field(default_factory=deque)

    path = "/v1"

    def __post_init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._release = threading.Event()  # ends every stall when the server stops

    # ----- lifecycle -----

    def _parts(self) -> tuple[type[ThreadingHTTPServer], type[BaseHTTPRequestHandler]]:
        return _Server, _Handler

    def start(self) -> Self:
        self._release.clear()
        return super().start()

    def stop(self) -> None:
        self._release.set()
        super().stop()

    # ----- scripting -----

    def script(self, *replies: Reply | Text) -> FakeOpenAI:
        """Queue replies for the next requests, one each (text, or a function of the request giving the
        text, is ``Reply.answer(text)``)."""
        with self._lock:
            self.replies.extend(r if isinstance(r, Reply) else Reply.answer(r) for r in replies)
        return self

    def always(self, reply: Reply | Text) -> FakeOpenAI:
        """The reply for every request once the queue is empty."""
        self.default = reply if isinstance(reply, Reply) else Reply.answer(reply)
        return self

    def _next(self, request: ChatRequest) -> Reply:
        with self._lock:
            reply = self.replies.popleft() if self.replies else self.default
            request.reply = reply.kind
            self.requests.append(request)
        return reply


class _Server(FakeHTTPServer):
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out and leave are expected; a bug in the fake is not."""
        if not isinstance(sys.exc_info()[1], OSError):
            traceback.print_exc()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake = self.server.fake
        request = ChatRequest(self.command, self.path, headers, body)
        reply = fake._next(request)
        try:
            self._play(reply, request)
        except OSError:  # the client gave up and closed the connection
            self.close_connection = True

    def _play(self, reply: Reply, request: ChatRequest) -> None:
        model = str(request.body.get("model", "fake"))
        if reply.kind == "stall":
            self.server.fake._release.wait(reply.seconds)
        if reply.kind == "error":
            echo = {"authorization": request.authorization or ""}
            error = {"message": reply.message, "type": "server_error", "request": echo}
            self._json(reply.status, {"error": error})
            return
        text = reply.text(request) if callable(reply.text) else reply.text
        if reply.stream is False or not request.body.get("stream"):
            self._json(200, _completion(model, text))
            return
        if reply.kind == "empty_stream":
            self._start_stream(chunked=True)
            self._end_chunks()
            return
        if reply.kind == "stream_error":
            self._start_stream(chunked=True)
            self._event({"error": {"message": reply.message, "type": "server_error"}}, chunked=True)
            self._end_chunks()
            return
        chunked = reply.kind != "cut" or reply.chunked
        self._start_stream(chunked=chunked)
        self._event(_chunk(model, {"role": "assistant", "content": ""}), chunked=chunked)
        for sent, piece in enumerate(_pieces(text)):
            if reply.kind == "cut" and sent >= reply.after:
                self.close_connection = True  # the socket closes with the body unfinished
                return
            if reply.kind == "interrupted" and sent >= reply.after:
                self._write("data: [DONE]\n\n", chunked=chunked)
                self._end_chunks()
                return
            self._event(_chunk(model, {"content": piece}), chunked=chunked)
        self._event(_chunk(model, {}, finish="stop"), chunked=chunked)
        self._write("data: [DONE]\n\n", chunked=chunked)
        self._end_chunks()

    # ----- writing -----

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_stream(self, *, chunked: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:  # the body runs until the server closes the connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def _event(self, payload: dict[str, Any], *, chunked: bool) -> None:
        self._write(f"data: {json.dumps(payload)}\n\n", chunked=chunked)

    def _write(self, text: str, *, chunked: bool) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _pieces(text: str, words: int = 3) -> list[str]:
    """The text in small deltas, as a model streams it (whitespace kept, so joining restores it)."""
    tokens = re.findall(r"\s*\S+\s*", text) or [text]
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


def _chunk(model: str, delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": 0},
    }
