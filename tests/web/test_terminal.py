"""The terminal in a real browser (Debian chromium through playwright):
`echo hi`, coloured output, a full-screen program asserted by the cells of
the drawn grid, resize, and a second browser context attaching to the same
screen. Screenshots at 1280x800 and 390x844 go to target/web-shots/.

Drives the real relay binary (`ACP_RELAY_BIN`, else target/debug/acp-relay)
with `--terminal`, its shells `/bin/sh` with a test HOME. When the relay
serves the web client (`/term.js` is one of its assets) the test opens the
client's Terminal tab; otherwise it loads term.js alone in a bare page
(tests/web/term_harness.js) under the same CSP.

Run: `python3 tests/web/test_terminal.py [BINARY [SHOTS_DIR]]` (the shape of
scripts/test-web.sh's runner) or under pytest. Without chromium or
playwright: fails when CI=true, else prints SKIPPED and passes.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEB = os.path.join(ROOT, "src", "serve", "web")
SHOTS = os.path.join(ROOT, "target", "web-shots")
if __name__ == "__main__" and len(sys.argv) > 1:
    os.environ.setdefault("ACP_RELAY_BIN", os.path.abspath(sys.argv[1]))
if __name__ == "__main__" and len(sys.argv) > 2:
    SHOTS = os.path.abspath(sys.argv[2])
WAIT_S = 20
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def skip_or_fail(why):
    if os.environ.get("CI") == "true":
        raise AssertionError(f"{why}: install chromium and playwright (scripts/setup-web.sh)")
    print(f"SKIPPED: {why}")
    return None


class Relay:
    """`acp-relay serve --terminal` on 127.0.0.1:0 in its own temp dir; killed on close."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="acp-relay-webterm-")
        d = self.dir.name
        self.workspace = os.path.join(d, "ws")
        self.home = os.path.join(d, "home")
        os.makedirs(self.workspace)
        os.makedirs(self.home)
        with open(os.path.join(self.workspace, "notes.txt"), "w") as f:
            f.write("".join(f"note line {i}\n" for i in range(1, 101)))
        if shutil.which("git"):
            git = ["git", "-C", self.workspace, "-c", "user.name=t", "-c", "user.email=t@e", "-c", "init.defaultBranch=main"]
            subprocess.run(git + ["init", "-q"], check=True)
            for i in range(1, 6):
                with open(os.path.join(self.workspace, "notes.txt"), "a") as f:
                    f.write(f"more {i}\n")
                subprocess.run(git + ["add", "-A"], check=True)
                subprocess.run(git + ["commit", "-q", "-m", f"Change {i}: a commit message long enough to wrap on a phone"], check=True)
        binary = os.environ.get("ACP_RELAY_BIN") or os.path.join(ROOT, "target", "debug", "acp-relay")
        if not os.path.exists(binary):
            subprocess.run(["cargo", "build", "--quiet", "--bin", "acp-relay"], cwd=ROOT, check=True)
        env = {k: v for k, v in os.environ.items() if k not in ("ENV", "BASH_ENV")}
        env.update(SHELL="/bin/sh", HOME=self.home)
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--workspace", self.workspace,
             "--data-dir", os.path.join(d, "data"), "--terminal", "--log", "info"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, start_new_session=True, text=True)
        self.log = []
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
        port = []
        ready = threading.Event()

        def read_stdout():
            for line in self.proc.stdout:
                m = re.search(r"listening on \S*:(\d+)", line)
                if m and not port:
                    port.append(int(m.group(1)))
                    ready.set()
        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(WAIT_S):
            self.close()
            raise AssertionError("relay did not print its address:\n" + "".join(self.log))
        self.port = port[0]
        with open(os.path.join(d, "data", "token")) as f:
            self.token = f.read().strip()
        self.origin = f"http://127.0.0.1:{self.port}"

    def _drain(self, pipe):
        for line in pipe:
            self.log.append(line)

    def serves_client(self):
        try:
            with urllib.request.urlopen(self.origin + "/term.js", timeout=5) as r:
                return r.status == 200
        except Exception:
            return False

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(10)
            except Exception:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.dir.cleanup()


def wait_for(what, fn, page=None):
    deadline = time.monotonic() + WAIT_S
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        if page is not None:
            page.wait_for_timeout(50)
        else:
            time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


ROWS_JS = """() => {
  const s = [...document.querySelectorAll('.term-screen')].find((e) => !e.hidden);
  if (!s) return null;
  return [...s.querySelectorAll('.term-grid .term-row')].map((r) => r.textContent.replace(/\\s+$/, ''));
}"""


# Rows whose spans do not sit on one line (a row is 1.2em tall).
TALL_ROWS_JS = """() => {
  const out = [];
  for (const r of document.querySelectorAll('.term-screen:not([hidden]) .term-grid .term-row')) {
    const top = r.getBoundingClientRect().top;
    for (const s of r.querySelectorAll('span')) {
      if (Math.abs(s.getBoundingClientRect().top - top) > 4) { out.push(r.dataset.row + ': ' + r.textContent.slice(0, 40)); break; }
    }
  }
  return out;
}"""


class Tab:
    """One browser context showing the terminal panel."""

    def __init__(self, browser, relay, client, harness, **ctx):
        self.ctx = browser.new_context(**ctx)
        self.page = self.ctx.new_page()
        self.errors = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        if harness:
            files = {
                "/__term/index.html": ("text/html", HARNESS_HTML),
                "/__term/harness.css": ("text/css", HARNESS_CSS),
                "/__term/harness.js": ("text/javascript", read(os.path.join(ROOT, "tests", "web", "term_harness.js"))),
                "/__term/term.js": ("text/javascript", read(os.path.join(WEB, "term.js"))),
                "/__term/term.css": ("text/css", read(os.path.join(WEB, "term.css"))),
            }

            def serve(route):
                path = "/" + route.request.url.split("/", 3)[3].split("#")[0]
                ctype, body = files[path]
                route.fulfill(status=200, headers={"Content-Type": ctype, "Content-Security-Policy": CSP}, body=body)
            self.page.route(re.compile(r".*/__term/.*"), serve)
            self.page.goto(f"{relay.origin}/__term/index.html#client={client}&token={relay.token}")
            self.page.wait_for_selector("body[data-ready='1']")
        else:
            self.page.goto(f"{relay.origin}/#token={relay.token}")
            try:
                self.page.wait_for_selector("#dot.open", timeout=WAIT_S * 1000)
            except Exception:
                raise AssertionError("the web client did not connect to the relay (see its console: "
                                     "a WebSocket subprotocol the relay does not echo?); "
                                     "TERM_WEB_HARNESS=1 tests term.js alone") from None
            self.page.click("#tab-term")
        self.page.wait_for_selector(".term-root")

    def rows(self):
        return self.page.evaluate(ROWS_JS) or []

    def wait_rows(self, what, pred):
        return wait_for(what, lambda: (lambda r: r if r and pred(r) else None)(self.rows()), self.page)

    def cell_text(self, row, col, n):
        r = self.rows()
        return r[row][col:col + n] if row < len(r) else ""

    def type(self, text):
        self.page.keyboard.type(text)

    def press(self, key):
        self.page.keyboard.press(key)

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, name)
        self.page.screenshot(path=path)
        return path

    def close(self):
        self.ctx.close()


HARNESS_HTML = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="stylesheet" href="harness.css"><link rel="stylesheet" href="term.css">
<title>terminal</title></head><body><div id="host"></div>
<script type="module" src="harness.js"></script></body></html>"""
# What the client's Terminal tab gives the panel: the page's height.
HARNESS_CSS = ("html,body{margin:0;height:100%}body{display:flex;flex-direction:column;font:16px system-ui,sans-serif}"
               "#host{flex:1;display:flex;flex-direction:column;min-height:0}")


def read(p):
    with open(p) as f:
        return f.read()


def run_all():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return skip_or_fail("python playwright is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        return skip_or_fail("Debian's chromium is not installed")
    relay = Relay()
    try:
        # TERM_WEB_HARNESS=1: term.js alone even where the client is served.
        harness = os.environ.get("TERM_WEB_HARNESS") == "1" or not relay.serves_client()
        with sync_playwright() as p:
            # The bare page is fulfilled by the test, not fetched from the
            # relay: let it reach the relay's loopback port.
            args = ["--no-sandbox"]
            if harness:
                args.append("--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessChecks")
            browser = p.chromium.launch(executable_path=chromium, args=args)
            try:
                scenario(browser, relay, harness)
            finally:
                browser.close()
    except Exception:
        sys.stderr.write("relay log:\n" + "".join(relay.log[-60:]))
        raise
    finally:
        relay.close()
    return True


def scenario(browser, relay, harness):
    tabs = []
    try:
        steps(browser, relay, harness, tabs)
    except Exception:
        for i, t in enumerate(tabs):
            try:
                t.shot(f"terminal-failure-{i}.png")
                sys.stderr.write(f"context {i} rows: {t.rows()!r}\nerrors: {t.errors!r}\n")
            except Exception:
                pass
        raise


def steps(browser, relay, harness, tabs):
    desk = Tab(browser, relay, "desk", harness, viewport={"width": 1280, "height": 800})
    tabs.append(desk)
    desk.page.click(".term-open")
    desk.page.wait_for_selector(".term-tab.on")
    desk.page.click(".term-screen:not([hidden])")

    # echo hi, once the shell's prompt shows (typed sooner, the terminal
    # echoes it before the prompt)
    desk.wait_rows("the shell's prompt", lambda r: any(x.rstrip().endswith(("#", "$")) for x in r))
    desk.type("echo hi\n")
    desk.wait_rows("echo hi printed hi", lambda r: "hi" in r)

    # Coloured output, as ls --color prints it, drawn as styled spans.
    desk.type("printf '\\033[H\\033[2J\\033[01;34msrc\\033[0m  \\033[32mrun.sh\\033[0m \\033[38;5;208mo\\033[48;2;10;20;30mrgb\\033[0m\\n'\n")
    desk.wait_rows("the coloured line", lambda r: r[0].startswith("src  run.sh o"))
    styles = desk.page.evaluate("""() => {
      const row = [...document.querySelectorAll('.term-screen:not([hidden]) .term-grid .term-row')][0];
      const at = (c) => row.querySelector(`span[data-col="${c}"]`);
      const s = (e) => e && { text: e.textContent, color: getComputedStyle(e).color, bg: getComputedStyle(e).backgroundColor, weight: getComputedStyle(e).fontWeight };
      return { src: s(at(0)), run: s(at(5)), o: s(at(12)), rgb: s(at(13)) };
    }""")
    assert styles["src"]["text"] == "src", styles
    assert int(styles["src"]["weight"]) >= 700, styles
    assert styles["src"]["color"] == "rgb(108, 182, 245)", styles  # --t4
    assert styles["run"]["text"] == "run.sh" and styles["run"]["color"] == "rgb(152, 195, 121)", styles  # --t2
    assert styles["o"]["color"] == "rgb(255, 135, 0)", styles  # 208 in the cube
    assert styles["rgb"]["bg"] == "rgb(10, 20, 30)", styles

    # A full-screen program: the file at its rows and columns.
    if shutil.which("vi"):
        desk.type("vi -u NONE -N notes.txt\n")
    else:
        desk.type("less notes.txt\n")
    rows = desk.wait_rows("the file on screen", lambda r: r[0] == "note line 1" and r[9] == "note line 10")
    assert desk.cell_text(9, 5, 6) == "line 1", rows[9]
    assert desk.page.locator(".term-screen:not([hidden]) .term-cursor").count() == 1
    assert desk.page.evaluate("() => document.querySelector('.term-screen:not([hidden])').classList.contains('alt')")
    desk.shot("terminal-1280x800.png")

    # A second device (a phone) attaches and sees the same screen; its
    # viewport resizes the terminal for both.
    phone = Tab(browser, relay, "phone", harness, viewport={"width": 390, "height": 844},
                is_mobile=True, has_touch=True, device_scale_factor=2)
    tabs.append(phone)
    phone.wait_rows("the phone shows vi", lambda r: any(x.startswith("note line") for x in r))
    cols_js = "() => parseInt(document.querySelector('.term-screen:not([hidden]) .term-grid').style.width)"
    wait_for("the phone's viewport sizes the terminal", lambda: desk.page.evaluate(cols_js) < 80, desk.page)
    same = wait_for("both devices draw the same screen",
                    lambda: (lambda a, b: a if a and a == b and a[0] == "note line 1" else None)(desk.rows(), phone.rows()),
                    desk.page)
    assert phone.page.evaluate(cols_js) == desk.page.evaluate(cols_js)
    assert phone.page.locator(".term-keys").is_visible(), "the key bar shows on a touch screen"
    phone.wait_rows("vi redrew at the phone's size", lambda r: len(r) > 2 and r[-2].startswith("note line"))
    phone.shot("terminal-390x844.png")

    # The phone types with its key bar: Esc, then :q! and Enter.
    phone.page.click(".term-key[title='Escape']")
    phone.page.click(".term-screen:not([hidden])")
    phone.type(":q!\n")
    wait_for("vi quit", lambda: desk.page.locator(".term-screen.alt").count() == 0, desk.page)

    # Resize: the desk's viewport grows; stty sees the new size.
    desk.page.set_viewport_size({"width": 1000, "height": 700})
    desk.page.click(".term-screen:not([hidden])")
    want = desk.page.evaluate("""() => {
      const m = document.querySelector('.term-measure').getBoundingClientRect();
      const s = document.querySelector('.term-stage').getBoundingClientRect();
      return [Math.floor((s.height - 4) / m.height), Math.floor((s.width - 8) / (m.width / 20))];
    }""")
    desk.type("printf '\\033[H\\033[2J'; stty size\n")
    desk.wait_rows("stty size shows the new size", lambda r: f"{want[0]} {want[1]}" in r)

    # Reconnect: the page gets a snapshot, no replay.
    desk.type("echo after-$((20+22))\n")
    desk.wait_rows("echo before the reconnect", lambda r: "after-42" in r)
    if harness:
        opens = desk.page.evaluate("() => window.__termOpens")
        desk.page.evaluate("() => window.__termReconnect()")
        wait_for("the page reconnected", lambda: desk.page.evaluate("() => window.__termOpens") > opens, desk.page)
        desk.wait_rows("the screen after the reconnect", lambda r: "after-42" in r)

    # How top and git log look (screenshots to look at).
    if shutil.which("git"):
        desk.type("printf '\\033[H\\033[2J'; git -c color.ui=always log --graph --decorate --stat -3 | cat\n")
        desk.wait_rows("git log", lambda r: any("Change 5" in x for x in r))
        desk.shot("terminal-gitlog-1000x700.png")
        tall = desk.page.evaluate(TALL_ROWS_JS)
        assert not tall, f"rows drawn taller than one line (the page's CSS leaking in?): {tall}"
        phone.wait_rows("git log on the phone", lambda r: any("Change 5" in x for x in r))
        phone.shot("terminal-gitlog-390x844.png")
        tall = phone.page.evaluate(TALL_ROWS_JS)
        assert not tall, f"rows drawn taller than one line on the phone: {tall}"
    if shutil.which("top"):
        desk.type("top -d 1\n")
        desk.wait_rows("top", lambda r: any(x.startswith("Tasks:") for x in r))
        wait_for("top's reverse-video header", lambda: desk.page.locator(".term-screen:not([hidden]) .term-grid span.t-r").count() > 0, desk.page)
        desk.shot("terminal-top-1000x700.png")
        desk.type("q")
        wait_for("top quit", lambda: desk.page.locator(".term-screen.alt").count() == 0, desk.page)

    # An agent's terminal (the demo agent's /run) drawn live with its colours.
    if harness:
        agent_terminal(desk)
    else:
        agent_terminal_in_chat(desk, relay)

    for t in (desk, phone):
        assert not t.errors, t.errors
    phone.close()
    desk.close()


AGENT_JS = r"""async () => {
  const api = window.__api, m = window.__termModule;
  await api.request('initialize', { protocolVersion: 1, clientCapabilities: {} });
  const { sessionId } = await api.request('session/new', { cwd: '/', mcpServers: [] });
  const box = document.body.appendChild(document.createElement('div'));
  box.id = 'agent-term';
  window.__updates = [];
  api.on('session/update', (p) => {
    window.__updates.push(p);
    const cs = p.update && p.update.content; for (const c of Array.isArray(cs) ? cs : []) {
      if (c.type === 'terminal' && !box.dataset.tid) { box.dataset.tid = c.terminalId; m.mountAgentTerminal(box, api, { terminalId: c.terminalId }); }
    }
  });
  api.request('session/prompt', { sessionId, prompt: [{ type: 'text',
    text: "/run printf '\\033[32mgreen\\033[0m start\\n'; sleep 0.3; printf 'step\\r'; echo done-$((40+2))" }] });
}"""


def agent_terminal(tab):
    tab.page.evaluate(AGENT_JS)
    try:
        wait_for("the agent terminal's output", lambda: "done-42" in (tab.page.text_content("#agent-term pre") or ""), tab.page)
    except AssertionError:
        sys.stderr.write("updates: " + json.dumps(tab.page.evaluate("() => window.__updates"))[:3000] + "\n")
        raise
    text = tab.page.text_content("#agent-term pre")
    assert text.startswith("green start\n"), repr(text)
    assert "step" not in text, "a bare CR starts the line again: " + repr(text)
    colour = tab.page.evaluate("() => getComputedStyle(document.querySelector('#agent-term pre span')).color")
    assert colour == "rgb(152, 195, 121)", colour


def agent_terminal_in_chat(tab, relay):
    """The client's tool card for a running /run shows its output live."""
    go = os.path.join(relay.workspace, "go-agent")
    pg = tab.page
    pg.click("#tab-chat")
    pg.fill("#input", "/run printf '\\033[32mgreen\\033[0m start\\n'; while [ ! -e go-agent ]; do sleep 0.05; done; echo done-$((40+2))")
    pg.click("#send")
    live = lambda: pg.evaluate("() => [...document.querySelectorAll('#log pre.term-agent')].map((p) => p.textContent).join('|')")
    wait_for("the tool card's live output", lambda: "green start" in live(), pg)
    colour = pg.evaluate("() => getComputedStyle(document.querySelector('#log pre.term-agent span')).color")
    assert colour == "rgb(152, 195, 121)", colour
    tab.shot("terminal-agent-card-1000x700.png")
    open(go, "w").close()
    wait_for("the command finished", lambda: "done-42" in live() or "done-42" in (pg.text_content("#log") or ""), pg)


def test_terminal():
    run_all()


if __name__ == "__main__":
    try:
        ok = run_all()
        print("1 passed, 0 failed" if ok else "0 passed, 0 failed, 1 skipped")
    except Exception:
        import traceback
        traceback.print_exc()
        print("0 passed, 1 failed")
        sys.exit(1)
