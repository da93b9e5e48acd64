"""The terminal in a real browser (Debian chromium through playwright):
`echo hi`, coloured output, underline, inverse and wide characters at their
cells, a full-screen program (vi, top, htop when installed) asserted by the
cells of the drawn grid, resize, a second browser context attaching to the
same screen, the touch key bar (Ctrl latch, Up, Tab, Paste: what reaches the
shell), a reconnect redrawn from the relay's snapshot, two terminals switched
by their tabs, and the keyboard (Tab goes to the shell; Ctrl+] leaves).
Screenshots at 1280x800, 1000x700 and 390x844 go to target/web-shots/; a
passing run of the full client writes docs/web-phone-terminal.png.

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


# The span drawn for the cell at (row, col) of the visible grid: its text,
# classes, colours and where it starts, in cells (its data-col) and in pixels
# from the row's left edge over the width of one cell.
CELL_JS = """([row, col]) => {
  const r = document.querySelector(`.term-screen:not([hidden]) .term-grid .term-row[data-row="${row}"]`);
  const e = r && r.querySelector(`span[data-col="${col}"]`);
  if (!e) return null;
  const m = document.querySelector('.term-measure').getBoundingClientRect();
  const cs = getComputedStyle(e);
  return { text: e.textContent, cls: [...e.classList], color: cs.color, bg: cs.backgroundColor,
           decoration: cs.textDecorationLine, cells: (e.getBoundingClientRect().left - r.getBoundingClientRect().left) / (m.width / 20) };
}"""

# Every row the visible terminal holds: its scrollback, then its grid.
ALL_ROWS_JS = """() => {
  const s = document.querySelector('.term-screen:not([hidden])');
  const t = (q) => [...s.querySelectorAll(q)].map((r) => r.textContent.replace(/\\s+$/, ''));
  return { history: t('.term-history .term-row'), grid: t('.term-grid .term-row') };
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

    def cell(self, row, col):
        return self.page.evaluate(CELL_JS, [row, col])

    def focused(self):
        return self.page.evaluate("() => { const a = document.activeElement; return a ? a.className + '|' + (a.getAttribute('aria-label') || '') : ''; }")

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
                is_mobile=True, has_touch=True, device_scale_factor=2,
                permissions=["clipboard-read", "clipboard-write"])
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
    key_bar(phone)
    docs = None if harness else docs_shot(phone)

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

    attributes_and_reconnect(desk, relay, harness)
    several_terminals(desk)
    leave_the_terminal(desk)

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
        # top draws on the main screen (no alternate screen to leave) and
        # may drop a key sent while it starts: it stops by itself, its last
        # frame left on the screen.
        desk.type("top -d 1 -n 3; echo top-done-$((6*7))\n")
        desk.wait_rows("top", lambda r: any(x.startswith("Tasks:") for x in r))
        wait_for("top's reverse-video header", lambda: desk.page.locator(".term-screen:not([hidden]) .term-grid span.t-r").count() > 0, desk.page)
        desk.shot("terminal-top-1000x700.png")
        desk.wait_rows("top ended", lambda r: any(x.endswith("top-done-42") for x in r))
    if shutil.which("htop"):
        htop(desk)
    else:
        print("SKIPPED: htop's header: htop is not installed (scripts/setup-web.sh installs it with apt)")

    # An agent's terminal (the demo agent's /run) drawn live with its colours.
    if harness:
        agent_terminal(desk)
    else:
        agent_terminal_in_chat(desk, relay)

    for t in (desk, phone):
        assert not t.errors, t.errors
    if docs:
        # The README's image, from a run that passed.
        shutil.copyfile(docs, os.path.join(ROOT, "docs", "web-phone-terminal.png"))
    phone.close()
    desk.close()


def prompt_back(tab, what):
    """Runs `echo` of a fresh marker and waits for its output (only the
    shell's arithmetic makes it): the shell is reading commands again. Typed
    before the prompt shows, the line is echoed first and its output follows
    the prompt on one row."""
    prompt_back.n = getattr(prompt_back, "n", 0) + 1
    n = prompt_back.n
    tab.type(f"echo {what}-$((1000+{n}))\n")
    tab.wait_rows(f"the shell answered after {what}", lambda r: any(x.endswith(f"{what}-{1000 + n}") for x in r))


def clear_screen(tab):
    """Clears the screen and waits for the prompt alone on it (a line typed
    sooner would be echoed before the clear and run unseen after it)."""
    tab.type("printf '\\033[H\\033[2J'\n")
    tab.wait_rows("the cleared screen", lambda r: r[0].strip() in ("#", "$") and not any(r[1:]))


def ran(tab, out, prompt, n=1):
    """Waits for `out` as an output row (the `n`th) with the shell's prompt
    on the next row: bash's readline is reading keys again (keys sent
    sooner would be echoed by the terminal, before the prompt)."""
    def done(r):
        at = [i for i, x in enumerate(r) if x == out]
        return len(at) == n and at[-1] + 1 < len(r) and r[at[-1] + 1].strip() == prompt
    return tab.wait_rows(f"{out!r} and the prompt after it", done)


def key_bar(phone):
    """The touch key bar: the Ctrl latch, an arrow, Tab and Paste, asserted by
    what reaches the shell."""
    pg = phone.page
    bar = lambda title: pg.locator(f".term-key[title='{title}']")
    clear_screen(phone)
    # Ctrl then c (typed) interrupts the foreground job: the prompt comes back.
    phone.type("sh -c 'echo sleeping-$((5*5)); exec sleep 100'\n")
    phone.wait_rows("the job runs", lambda r: "sleeping-25" in r)
    bar("Control (next key)").click()
    assert bar("Control (next key)").get_attribute("aria-pressed") == "true", "the Ctrl latch shows it is on"
    phone.type("c")
    assert bar("Control (next key)").get_attribute("aria-pressed") == "false", "the Ctrl latch lets go after one key"
    prompt_back(phone, "interrupted")
    # Up, Tab and Paste in bash (readline: history, completion, bracketed paste).
    if not shutil.which("bash"):
        print("SKIPPED: the key bar's Up, Tab and Paste in a shell with line editing: bash is not installed")
        return
    phone.type("PS1='b$ ' bash --norc --noprofile\n")
    phone.wait_rows("bash's prompt", lambda r: any(x.strip() == "b$" for x in r))
    phone.type("echo first-$((1+2))\n")
    ran(phone, "first-3", "b$")
    bar("Up").click()
    phone.wait_rows("Up recalls the command", lambda r: r.count("b$ echo first-$((1+2))") == 2)
    phone.press("Enter")
    ran(phone, "first-3", "b$", n=2)
    phone.type("echo note")
    bar("Tab").click()
    phone.wait_rows("Tab completed the file name", lambda r: any(x.startswith("b$ echo notes.txt") for x in r))
    phone.press("Enter")
    ran(phone, "notes.txt", "b$")
    pg.evaluate("() => navigator.clipboard.writeText('echo pasted-$((2*3))')")
    bar("Paste").click()
    phone.wait_rows("the pasted text at the prompt", lambda r: any(x.startswith("b$ echo pasted-$((2*3))") for x in r))
    phone.press("Enter")
    phone.wait_rows("the pasted command ran", lambda r: "pasted-6" in r)
    phone.type("exit\n")
    prompt_back(phone, "left-bash")


# Underline, inverse and wide characters, then a reconnect: the relay's
# snapshot redraws the screen (and what changed while the page was away),
# with its scrollback once.
ATTRS_CMD = ("printf '\\033[H\\033[2J'; printf 'snap-top\\n\\033[4mund\\033[0m \\033[7minv\\033[0m\\n"
             "\\346\\274\\242\\345\\255\\227ab\\n'; while [ ! -e go-term ]; do sleep 0.05; done; echo while-away-$((3*3))\n")


def attributes_and_reconnect(desk, relay, harness):
    desk.type(ATTRS_CMD)
    desk.wait_rows("the attribute lines", lambda r: len(r) > 3 and r[0] == "snap-top" and r[2] == "漢字ab")

    def attrs(when):
        und, inv = desk.cell(1, 0), desk.cell(1, 4)
        assert und and und["text"] == "und" and "t-u" in und["cls"] and "underline" in und["decoration"], (when, und)
        assert inv and inv["text"] == "inv" and "t-r" in inv["cls"], (when, inv)
        # Inverse: the terminal's foreground as the background and back.
        assert inv["bg"] == "rgb(230, 230, 230)" and inv["color"] == "rgb(20, 23, 28)", (when, inv)
        wide, ab = desk.cell(2, 0), desk.cell(2, 4)
        assert wide and wide["text"] == "漢字" and "t-w" in wide["cls"], (when, wide)
        assert desk.cell(2, 2) is None, (when, "a wide character takes two cells: nothing starts at column 2")
        assert ab and ab["text"] == "ab" and abs(ab["cells"] - 4) < 0.1, (when, "ab starts at column 4", ab)
    attrs("live")

    before = desk.page.evaluate(ALL_ROWS_JS)
    # What the page shows is wiped (a stale row in each place), so only a
    # new snapshot can bring the screen back.
    desk.page.evaluate("""() => {
      const s = document.querySelector('.term-screen:not([hidden])');
      for (const r of s.querySelectorAll('.term-grid .term-row')) r.textContent = 'stale';
      const h = s.querySelector('.term-history'), d = document.createElement('div');
      d.className = 'term-row'; d.textContent = 'stale'; h.prepend(d);
    }""")
    if harness:
        opens = desk.page.evaluate("() => window.__termOpens")
        desk.page.evaluate("() => window.__termReconnect()")
        back = lambda: desk.page.evaluate("() => window.__termOpens") > opens
    else:
        desk.page.evaluate("() => { window.__oldWs = window.acpRelay.ws; window.__oldWs.close(); }")
        back = lambda: desk.page.evaluate("() => { const w = window.acpRelay.ws; return !!(w && w !== window.__oldWs && w._welcomed); }")
    # The shell prints while the page is away (or just back).
    open(os.path.join(relay.workspace, "go-term"), "w").close()
    wait_for("the page reconnected", back, desk.page)
    after = desk.wait_rows("the screen after the reconnect", lambda r: "while-away-9" in r and "stale" not in r)
    attrs("after the reconnect")
    now = desk.page.evaluate(ALL_ROWS_JS)
    assert "stale" not in now["history"], "the snapshot replaces the scrollback"
    assert now["history"] == before["history"], ("the scrollback once, as before", before["history"][-5:], now["history"][-5:])
    assert after[:3] == before["grid"][:3], (before["grid"][:4], after[:4])
    assert after.count("while-away-9") == 1 and after.count("snap-top") == 1, after
    prompt_back(desk, "reconnected")
    desk.shot("terminal-attrs-1000x700.png")


def several_terminals(desk):
    """A second terminal: each tab shows its own rows and input goes to the
    one shown."""
    pg = desk.page
    first = pg.get_attribute(".term-tab.on .term-tab-name", "data-terminal-id")
    pg.click(".term-tools button[title='New terminal']")
    wait_for("a second tab", lambda: pg.locator(".term-tab").count() == 2, pg)
    second = wait_for("the new tab is shown", lambda: (lambda t: t if t and t != first else None)(
        pg.get_attribute(".term-tab.on .term-tab-name", "data-terminal-id")), pg)
    pg.click(".term-screen:not([hidden])")
    desk.wait_rows("the second shell's prompt", lambda r: any(x.rstrip().endswith(("#", "$")) for x in r))
    desk.type("echo in-two-$((2*2))\n")
    desk.wait_rows("the second terminal's output", lambda r: "in-two-4" in r)
    shown = lambda: pg.get_attribute(".term-screen:not([hidden])", "data-terminal-id")
    pg.click(f".term-tab-name[data-terminal-id='{first}']")
    wait_for("the first terminal shown", lambda: shown() == first, pg)
    rows = desk.wait_rows("the first terminal's rows", lambda r: "while-away-9" in r)
    assert not any("in-two" in x for x in rows), rows
    assert desk.focused().startswith("term-input"), "switching tabs keeps the keys on the terminal"
    desk.type("echo in-one-$((1+1))\n")
    desk.wait_rows("input goes to the first terminal", lambda r: "in-one-2" in r)
    desk.shot("terminal-two-tabs-1000x700.png")
    pg.click(f".term-tab-name[data-terminal-id='{second}']")
    wait_for("the second terminal shown", lambda: shown() == second, pg)
    rows = desk.wait_rows("the second terminal's rows", lambda r: "in-two-4" in r)
    assert not any("in-one" in x or "while-away" in x for x in rows), rows
    # Closing its tab ends it and shows the other.
    pg.click(f".term-tab:has(.term-tab-name[data-terminal-id='{second}']) .term-tab-close")
    wait_for("the second tab gone", lambda: pg.locator(".term-tab").count() == 1 and shown() == first, pg)
    desk.wait_rows("the first terminal again", lambda r: "in-one-2" in r)


def leave_the_terminal(desk):
    """Tab goes to the shell (the focus stays); Ctrl+] leaves to the tab."""
    pg = desk.page
    pg.click(".term-screen:not([hidden])")
    assert desk.focused().startswith("term-input"), desk.focused()
    assert pg.is_visible(".term-hint"), "the way out shows while the terminal has the keys"
    assert "Ctrl+]" in pg.text_content(".term-hint")
    desk.type("echo tab")
    desk.press("Tab")
    desk.type("x-$((3+4))\n")
    desk.wait_rows("the Tab reached the shell", lambda r: any(x.endswith("tab x-7") for x in r))
    assert desk.focused().startswith("term-input"), ("Tab stays in the terminal", desk.focused())
    desk.press("Control+BracketRight")
    wait_for("Ctrl+] left the terminal", lambda: desk.focused().startswith("term-tab-name"), pg)
    assert pg.is_hidden(".term-hint")
    desk.press("Tab")
    assert not desk.focused().startswith("term-input"), ("Tab goes on through the page", desk.focused())
    # Nothing of Ctrl+] reached the shell: the next line runs as typed.
    pg.click(".term-screen:not([hidden])")
    prompt_back(desk, "left")


def htop(desk):
    """htop's header: a CPU meter and the tasks line at their cells."""
    desk.type("printf '\\033[H\\033[2J'; htop -d 10\n")
    rows = desk.wait_rows("htop's header", lambda r: len(r) > 3 and any("Tasks:" in x for x in r[:6]) and r[-1].lstrip().startswith("F1"))
    row = next(i for i, x in enumerate(rows[:6]) if "Tasks:" in x)
    assert re.match(r"^\s*\d+\s*\[", rows[row]), ("a CPU meter left of the tasks line", rows[row])
    assert any(x.lstrip().startswith("Mem[") for x in rows[row:row + 4]), ("the memory meter below", rows[:6])
    meter = desk.page.evaluate("""([row]) => [...document.querySelectorAll(`.term-screen:not([hidden]) .term-grid .term-row[data-row="${row}"] span[data-col]`)]
      .map((e) => [Number(e.dataset.col), e.textContent])""", [row])
    tasks = next(((c, t) for c, t in meter if t.lstrip().startswith("Tasks:")), None)
    assert tasks is not None, ("a span starts with Tasks:", meter)
    cols = int(desk.page.evaluate("() => parseInt(document.querySelector('.term-screen:not([hidden]) .term-grid').style.width)"))
    assert tasks[0] >= cols // 3, ("the tasks line is in the header's right half", tasks, cols)
    assert desk.page.locator(".term-screen.alt").count() == 1
    desk.shot("terminal-htop-1000x700.png")
    desk.type("q")
    wait_for("htop quit", lambda: desk.page.locator(".term-screen.alt").count() == 0, desk.page)


def docs_shot(phone):
    """The README's phone terminal image (docs/web-phone-terminal.png, copied
    there when the run passes): the phone's shell with colours, at CSS pixels."""
    phone.page.click(".term-screen:not([hidden])")
    phone.type("printf '\\033[H\\033[2J'; ls -aF --color=always; git -c color.ui=always log --oneline --decorate --graph -3 | cat\n")
    phone.wait_rows("the phone's ls and git log", lambda r: any("Change 5" in x for x in r) and "notes.txt" in " ".join(r))
    path = os.path.join(SHOTS, "terminal-phone-docs-390x844.png")
    os.makedirs(SHOTS, exist_ok=True)
    phone.page.screenshot(path=path, scale="css")
    return path


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
