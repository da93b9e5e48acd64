#!/usr/bin/env python3
"""A scripted model on loopback for real ACP agents in tests (stdlib only).

Speaks the OpenAI Responses API (`POST .../responses`, SSE), what codex-acp
uses with `wire_api = "responses"`. The script, per request:

- the conversation's last item is a tool result -> a final message quoting
  that result ("tool said: ...");
- the last user text holds `RUN: <command>` -> a call of the agent's shell
  tool running <command> (the tool and its argument shape are taken from the
  request's own `tools`, so it follows the agent's version);
- anything else -> a short message echoing the user text.

Prints `listening on 127.0.0.1:<port>` on stdout, then serves until killed.
Each request is appended as one JSON line to the file given with --log.
"""

import argparse
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_LOCK = threading.Lock()
SHELL_TOOLS = ("shell", "shell_command", "exec_command", "local_shell", "container.exec")


def text_of(content):
    if isinstance(content, str):
        return content
    out = []
    for part in content or []:
        if isinstance(part, dict):
            t = part.get("text")
            if isinstance(t, str):
                out.append(t)
    return "".join(out)


def last_user_text(items):
    for item in reversed(items):
        if item.get("type") in (None, "message") and item.get("role") == "user":
            return text_of(item.get("content"))
    return ""


def tool_output(items):
    """The output of the last item when it is a tool result, else None."""
    if not items:
        return None
    last = items[-1]
    if last.get("type") in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
        out = last.get("output")
        if isinstance(out, dict):
            out = out.get("content") or out.get("output") or json.dumps(out)
        if isinstance(out, list):
            out = text_of(out)
        return str(out)
    return None


def shell_call(tools, command):
    """(name, arguments) for a call of the request's shell tool."""
    by_name = {}
    for t in tools or []:
        name = t.get("name") or (t.get("function") or {}).get("name")
        if name:
            by_name[name] = t
    for name in SHELL_TOOLS:
        if name in by_name:
            t = by_name[name]
            params = t.get("parameters") or (t.get("function") or {}).get("parameters") or {}
            props = params.get("properties") or {}
            if "cmd" in props:
                return name, {"cmd": command}
            cmd = props.get("command") or {}
            if cmd.get("type") == "array":
                return name, {"command": ["bash", "-lc", command]}
            return name, {"command": command}
    # No shell tool offered: say so in the message instead.
    return None, None


def sse(handler, events):
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Connection", "close")
    handler.end_headers()
    for ev in events:
        data = json.dumps(ev)
        handler.wfile.write(f"event: {ev['type']}\ndata: {data}\n\n".encode())
        handler.wfile.flush()


class Responses:
    """OpenAI Responses API."""

    counter = 0
    lock = threading.Lock()

    @classmethod
    def next_id(cls):
        with cls.lock:
            cls.counter += 1
            return cls.counter

    def answer(self, req):
        items = req.get("input") or []
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        n = self.next_id()
        rid = f"resp_{n}"
        out = tool_output(items)
        user = last_user_text(items)
        m = re.search(r"RUN: (.+)", user)
        if out is not None:
            return rid, [self.message(n, f"tool said: {out.strip()[:200]}")]
        if m:
            name, args = shell_call(req.get("tools"), m.group(1).strip())
            if name:
                return rid, [
                    {
                        "type": "function_call",
                        "id": f"fc_{n}",
                        "call_id": f"call_{n}",
                        "name": name,
                        "arguments": json.dumps(args),
                        "status": "completed",
                    }
                ]
            return rid, [self.message(n, "no shell tool was offered")]
        return rid, [self.message(n, f"fake model heard: {user.strip()[:200]}")]

    @staticmethod
    def message(n, text):
        return {
            "type": "message",
            "id": f"msg_{n}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }

    def events(self, req):
        rid, items = self.answer(req)
        evs = [{"type": "response.created", "response": {"id": rid}}]
        for i, item in enumerate(items):
            evs.append({"type": "response.output_item.added", "output_index": i, "item": item})
            if item["type"] == "message":
                text = item["content"][0]["text"]
                evs.append(
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": i,
                        "content_index": 0,
                        "delta": text,
                    }
                )
            evs.append({"type": "response.output_item.done", "output_index": i, "item": item})
        evs.append(
            {
                "type": "response.completed",
                "response": {
                    "id": rid,
                    "output": items,
                    "usage": {
                        "input_tokens": 10,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens": 5,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": 15,
                    },
                },
            }
        )
        return evs


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_path = None

    def log_message(self, fmt, *args):  # quiet
        pass

    def record(self, body):
        if not self.log_path:
            return
        with LOG_LOCK, open(self.log_path, "a") as f:
            f.write(json.dumps({"path": self.path, "body": body}) + "\n")

    def do_GET(self):
        # Model lists and the like: an empty list is enough.
        payload = json.dumps({"object": "list", "data": [], "models": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            req = {}
        self.record(req)
        if self.path.rstrip("/").endswith("/responses"):
            sse(self, Responses().events(req))
            self.close_connection = True
            return
        payload = json.dumps({"error": {"message": f"fake model: no route {self.path}"}}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log")
    args = ap.parse_args()
    Handler.log_path = args.log
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print(f"listening on 127.0.0.1:{srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
