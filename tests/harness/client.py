"""Talks to a running ComfyUI as the canvas does: POST /prompt, follow /ws, read /history."""
from __future__ import annotations

import json
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import websocket  # websocket-client

TEXT_EVENT = 3  # protocol.BinaryEventTypes.TEXT: progress text for a node


class PromptRejected(Exception):
    """POST /prompt answered 400: the server's validation refused the prompt."""

    def __init__(self, body: dict):
        self.body = body
        super().__init__(json.dumps(body)[:2000])

    @property
    def node_errors(self) -> dict:
        return self.body.get("node_errors", {})

    def messages(self) -> str:
        return json.dumps(self.body)


@dataclass
class PromptResult:
    prompt_id: str
    status: str                               # success | error | interrupted
    outputs: dict[str, Any]                   # node id -> ui output, from /history
    events: list[dict] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)   # (node id, progress text)

    @property
    def error(self) -> dict | None:
        for e in self.events:
            if e["type"] == "execution_error":
                return e["data"]
        return None

    @property
    def error_message(self) -> str:
        err = self.error
        return f"{err['exception_type']}: {err['exception_message']}" if err else ""

    def progress(self, node_id: str | None = None) -> list[dict]:
        return [e["data"] for e in self.events
                if e["type"] == "progress" and (node_id is None or e["data"].get("node") == node_id)]

    def texts_for(self, node_id: str) -> list[str]:
        return [t for n, t in self.texts if n == node_id]

    def cached_nodes(self) -> list[str]:
        return [n for e in self.events if e["type"] == "execution_cached" for n in e["data"]["nodes"]]

    def executed_nodes(self) -> list[str]:
        return [e["data"]["node"] for e in self.events if e["type"] == "executing" and e["data"]["node"]]


class ComfyClient:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self._events: list[dict] = []
        self._texts: list[tuple[str, str, int]] = []
        self._cond = threading.Condition()
        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        self._ws = websocket.create_connection(ws_url, timeout=30)
        self._ws.settimeout(None)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def __enter__(self) -> ComfyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._ws.close()
        except Exception:  # noqa: BLE001 - closing a socket the server may already have dropped
            pass

    # --- HTTP -----------------------------------------------------------------------------
    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return status, raw

    def queue(self, prompt: dict) -> str:
        status, body = self.request("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id})
        if status != 200:
            raise PromptRejected(body if isinstance(body, dict) else {"error": str(body)})
        return body["prompt_id"]

    def interrupt(self) -> None:
        self.request("POST", "/interrupt", {})

    def history(self, prompt_id: str) -> dict:
        return self.get(f"/history/{prompt_id}").get(prompt_id, {})

    def view(self, image: dict) -> bytes:
        query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
        return self.get(f"/view?{query}")

    # --- a prompt from queue to result ---------------------------------------------------
    def run(self, prompt: dict, timeout: float = 300) -> PromptResult:
        return self.wait(self.queue(prompt), timeout)

    def wait(self, prompt_id: str, timeout: float = 300) -> PromptResult:
        end = self.wait_for_event(lambda e: e["type"] in ("execution_success", "execution_error",
                                                          "execution_interrupted")
                                  and e["data"].get("prompt_id") == prompt_id, timeout)
        status = {"execution_success": "success", "execution_error": "error",
                  "execution_interrupted": "interrupted"}[end["type"]]
        # ComfyUI stores the history entry, then sends `executing` with node None: only then read it.
        self.wait_for_event(lambda e: e["type"] == "executing" and e["data"].get("node") is None
                            and e["data"].get("prompt_id") == prompt_id, timeout=60)
        with self._cond:
            events = [e for e in self._events
                      if isinstance(e.get("data"), dict) and e["data"].get("prompt_id") == prompt_id]
            texts = [(n, t) for n, t, _ in self._texts]
        outputs = self.history(prompt_id).get("outputs", {})
        return PromptResult(prompt_id, status, outputs, events, texts)

    def wait_for_event(self, predicate, timeout: float = 300) -> dict:
        """Blocks until an event matching `predicate` has arrived (already arrived counts)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self._events:
                    if isinstance(e.get("data"), dict) and predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching event in {timeout} s; last events: {self._events[-5:]}")
                self._cond.wait(left)

    def seen(self) -> tuple[list[dict], list[tuple[str, str]]]:
        """Every JSON event and every (node id, progress text) this client's socket has received so far."""
        with self._cond:
            return list(self._events), [(n, t) for n, t, _ in self._texts]

    def wait_for_text(self, node_id: str, predicate, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for n, t, _ in self._texts:
                    if n == node_id and predicate(t):
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching progress text for node {node_id} in {timeout} s")
                self._cond.wait(left)

    def bar_when_said(self, node_id: str) -> list[tuple[str, tuple[int, int] | None]]:
        """Each progress text of `node_id`, with what its progress bar showed when the text arrived: the
        (value, max) of the node's last `progress` event before it (None before any)."""
        with self._cond:
            said = []
            for node, text, seen in self._texts:
                if node != node_id:
                    continue
                bar = next(((e["data"]["value"], e["data"]["max"]) for e in reversed(self._events[:seen])
                            if e.get("type") == "progress" and e["data"].get("node") == node_id), None)
                said.append((text, bar))
            return said

    def _read(self) -> None:
        while True:
            try:
                opcode, data = self._ws.recv_data()
            except Exception:  # noqa: BLE001 - the connection ended
                return
            with self._cond:
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    event = json.loads(data)
                    event["received"] = time.monotonic()        # per-node timings for the benchmarks
                    self._events.append(event)
                elif opcode == websocket.ABNF.OPCODE_BINARY and len(data) >= 8:
                    (event,) = struct.unpack(">I", data[:4])
                    if event == TEXT_EVENT:
                        (n,) = struct.unpack(">I", data[4:8])
                        node = data[8:8 + n].decode()
                        self._texts.append((node, data[8 + n:].decode("utf-8", "replace"), len(self._events)))
                self._cond.notify_all()
