"""Scripted ACP agents with the quirks real agents have, for the relay's
interop tests (tests/interop_quirks.rs). Plain Python 3, no SDK: one
JSON-RPC message per line on stdin/stdout, logs on stderr.

    python3 quirk_agent.py MODE

Modes:
  set_model      still uses `session/set_model` and adds fields ACP does not
                 define (in initialize, session/new, prompt answers and
                 updates); set_model answers with the params it received.
  late_updates   answers a prompt first, then sends three more updates.
  load_unsupported
                 advertises loadSession:true but answers session/load with
                 -32601; knows only the sessions it created itself.
  stdout_logs    prints log lines that are not JSON on stdout (a banner,
                 debug lines, a blank line, a broken object, ANSI colours).
  huge           answers a prompt with one 5 MiB agent_message_chunk.
  auth           advertises authMethods; session/new fails with
                 auth_required (-32000) until `authenticate` succeeds.
  load_history   like gemini: answers `session/load` first (with its modes)
                 and streams the session's history afterwards; has modes
                 (`set_mode` answers and sends current_mode_update); keeps
                 its sessions in .quirk-sessions.json in its cwd, so a
                 restarted relay's new agent can load them.
  never_answers  answers initialize and session/new, then never answers
                 anything (authenticate, prompts, set_mode).

Every mode echoes the prompt's text in a chunk "MODE: TEXT" and ends the
turn with stopReason end_turn. A prompt whose text is "exit" ends the process
(status 3), like a crash.
"""

import json
import sys
import time
import uuid

MODE = sys.argv[1] if len(sys.argv) > 1 else "plain"
HUGE_BYTES = 5 * 1024 * 1024

sessions = {}
authenticated = False


def log(msg):
    print(f"[quirk-agent {MODE}] {msg}", file=sys.stderr, flush=True)


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def raw(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def result(rid, res):
    send({"jsonrpc": "2.0", "id": rid, "result": res})


def error(rid, code, message, data=None):
    err = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    send({"jsonrpc": "2.0", "id": rid, "error": err})


def update(sid, upd):
    send({"jsonrpc": "2.0", "method": "session/update", "params": {"sessionId": sid, "update": upd}})


def chunk(sid, text, **extra):
    upd = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": text}}
    upd.update(extra)
    update(sid, upd)


STATE_FILE = ".quirk-sessions.json"


def save_sessions():
    with open(STATE_FILE, "w") as f:
        json.dump(sessions, f)


def load_sessions():
    try:
        with open(STATE_FILE) as f:
            sessions.update(json.load(f))
    except (OSError, ValueError):
        pass


def modes_of(s):
    return {"currentModeId": s["mode"],
            "availableModes": [{"id": "auto", "name": "Auto"}, {"id": "default", "name": "Default"}]}


def load_history(rid, params):
    sid = params.get("sessionId")
    if sid not in sessions:
        error(rid, -32602, f"unknown session {sid}")
        return
    s = sessions[sid]
    result(rid, {"modes": modes_of(s)})
    for (text, answer) in s["history"]:
        update(sid, {"sessionUpdate": "user_message_chunk", "content": {"type": "text", "text": text}})
        chunk(sid, answer)


def initialize(rid, params):
    caps = {"loadSession": MODE in ("load_unsupported", "load_history"),
            "promptCapabilities": {"image": False}}
    res = {"protocolVersion": 1, "agentCapabilities": caps, "authMethods": [],
           "agentInfo": {"name": f"quirk-{MODE}", "version": "0.0.1"}}
    if MODE == "set_model":
        caps["vendorCapability"] = {"fancy": True}
        res["vendorField"] = "kept"
    if MODE == "auth":
        res["authMethods"] = [{"id": "test-token", "name": "Test token",
                               "description": "call authenticate with methodId test-token"}]
    if MODE == "stdout_logs":
        raw("[debug] answering initialize")
    result(rid, res)


def new_session(rid, params):
    if MODE == "auth" and not authenticated:
        error(rid, -32000, "Authentication required", {"authMethods": ["test-token"]})
        return
    sid = f"{MODE}-{uuid.uuid4().hex[:10]}"
    sessions[sid] = {"model": "default", "prompts": 0}
    res = {"sessionId": sid}
    if MODE == "load_history":
        sessions[sid].update({"mode": "auto", "history": []})
        res["modes"] = modes_of(sessions[sid])
        save_sessions()
    if MODE == "set_model":
        res["models"] = {"currentModelId": "default",
                         "availableModels": [{"modelId": "default", "name": "Default"},
                                             {"modelId": "fast", "name": "Fast"}]}
        res["vendorSessionField"] = {"a": 1}
    result(rid, res)


def prompt(rid, params):
    sid = params.get("sessionId")
    if sid not in sessions:
        error(rid, -32602, f"unknown session {sid}")
        return
    text = " ".join(b.get("text", "") for b in params.get("prompt", []) if isinstance(b, dict))
    if text.strip() == "exit":
        log("exiting on request")
        sys.exit(3)
    s = sessions[sid]
    s["prompts"] += 1
    if MODE == "stdout_logs":
        raw("\x1b[32mINFO\x1b[0m starting a turn")
        raw("")
        raw("{this is not json")
    if MODE == "set_model":
        chunk(sid, f"{MODE}: {text} (model {s['model']})", vendorUpdateField=[1, 2, 3])
        update(sid, {"sessionUpdate": "vendor_thing_update", "whatever": {"deep": True}})
        result(rid, {"stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 2},
                     "vendorResultField": "kept"})
        return
    if MODE == "huge":
        body = "x" * HUGE_BYTES
        chunk(sid, f"{MODE}: {text} " + body + " END-OF-HUGE")
        result(rid, {"stopReason": "end_turn"})
        return
    answer = f"{MODE}: {text} (turn {s['prompts']} of session {sid})"
    chunk(sid, answer)
    if MODE == "load_history":
        s["history"].append([text, answer])
        save_sessions()
    result(rid, {"stopReason": "end_turn"})
    if MODE == "late_updates":
        for i in range(1, 4):
            time.sleep(0.05)
            chunk(sid, f"late update {i} for {text}")


def handle(msg):
    global authenticated
    method = msg.get("method")
    rid = msg.get("id")
    params = msg.get("params") or {}
    if method is None:
        return  # an answer to a request of ours: this agent sends none
    if MODE == "never_answers" and method not in ("initialize", "session/new"):
        log(f"not answering {method}")
        return
    if method == "initialize":
        initialize(rid, params)
    elif method == "authenticate":
        if params.get("methodId") == "test-token":
            authenticated = True
            result(rid, {})
        else:
            error(rid, -32602, f"unknown auth method {params.get('methodId')}")
    elif method == "session/new":
        new_session(rid, params)
    elif method == "session/load" and MODE == "load_history":
        load_history(rid, params)
    elif method == "session/set_mode" and MODE == "load_history":
        sid = params.get("sessionId")
        if sid in sessions:
            sessions[sid]["mode"] = params.get("modeId")
            save_sessions()
            result(rid, {})
            update(sid, {"sessionUpdate": "current_mode_update", "currentModeId": params.get("modeId")})
        else:
            error(rid, -32602, f"unknown session {sid}")
    elif method == "session/load":
        if MODE == "load_unsupported":
            error(rid, -32601, "Method not found: session/load")
        else:
            error(rid, -32601, "Method not found")
    elif method == "session/prompt":
        prompt(rid, params)
    elif method == "session/set_model" and MODE == "set_model":
        sid = params.get("sessionId")
        if sid in sessions:
            sessions[sid]["model"] = params.get("modelId")
            result(rid, {"echo": params})
        else:
            error(rid, -32602, f"unknown session {sid}")
    elif method == "session/cancel":
        pass
    elif rid is not None:
        error(rid, -32601, f"Method not found: {method}")


def main():
    if MODE == "stdout_logs":
        raw("Quirk agent 1.0 starting up (this banner is not JSON)")
    log("started")
    if MODE == "load_history":
        load_sessions()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            log(f"bad line: {line[:80]}")
            continue
        handle(msg)
    log("stdin closed")


if __name__ == "__main__":
    main()
