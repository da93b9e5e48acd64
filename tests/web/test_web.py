"""Browser tests of the built-in web client against the real binary, in
Debian's chromium driven by playwright (never a downloaded browser).

Run by scripts/test-web.sh: `python tests/web/test_web.py BINARY SHOTS_DIR [NAME...]`.
Every wait is a condition with a deadline; no test asserts on timing.
"""
import base64, gzip, json, os, shutil, signal, socket, subprocess, sys, threading, traceback, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relay import Relay, wait_for  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/acp-relay"
SHOTS = sys.argv[2] if len(sys.argv) > 2 else "target/web-shots"
ONLY = set(sys.argv[3:])
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
T = 20000  # ms, playwright waits

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def git(ws, *args):
    subprocess.run(["git", "-C", ws, *args], check=True, capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t"))


def make_workspace(ws):
    with open(os.path.join(ws, "README.md"), "w") as f:
        f.write("# Demo readme\nfirst line\nsecond line\nthird line\n")
    with open(os.path.join(ws, "notes.txt"), "w") as f:
        f.write("old line\n")
    os.makedirs(os.path.join(ws, "src"), exist_ok=True)
    with open(os.path.join(ws, "src", "main.rs"), "w") as f:
        f.write("fn main() {\n    println!(\"hi\");\n}\n")
    with open(os.path.join(ws, "long.txt"), "w") as f:
        f.write("".join(f"long line {k}\n" for k in range(1, 301)))
    with open(os.path.join(ws, ".gitignore"), "w") as f:
        f.write("secret.log\n")
    with open(os.path.join(ws, "secret.log"), "w") as f:
        f.write("ignored\n")
    git(ws, "init", "-q")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "init")
    with open(os.path.join(ws, "README.md"), "w") as f:
        f.write("# Demo readme\nfirst line\nsecond line CHANGED\nthird line\nfourth line\n")


class Env:
    """One relay and one browser for a test; pages opened through it."""

    def __init__(self, pw, browser, extra=(), workspace=True):
        self.relay = Relay(BIN, extra=extra)
        if workspace:
            make_workspace(self.relay.workspace)
        self.relay.start()
        self.browser = browser
        self.contexts = []
        self.errors = []

    def page(self, viewport=PHONE, token=True, scheme="light", perms=(), touch=False, init=None, wait=True):
        ctx = self.browser.new_context(viewport=viewport, color_scheme=scheme, permissions=list(perms), has_touch=touch, is_mobile=touch)
        self.contexts.append(ctx)
        if init:
            ctx.add_init_script(init)
        pg = ctx.new_page()
        pg.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        pg.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" and ("Content Security Policy" in m.text or "Refused" in m.text or "SyntaxError" in m.text) else None)
        pg.goto(self.relay.url if token else self.relay.base + "/")
        if token and wait:
            connected(pg)
        return pg

    def close(self):
        for c in self.contexts:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        self.relay.cleanup()
        assert not self.errors, "\n".join(self.errors)


def connected(pg):
    pg.wait_for_selector("#dot.open", timeout=T)
    pg.wait_for_function("() => window.acpRelay && window.acpRelay.ws && window.acpRelay.ws._welcomed", timeout=T)


def prompt(pg, text):
    pg.fill("#input", text)
    pg.click("#send")


def wait_done(pg, n=1):
    pg.wait_for_function(f"() => document.querySelectorAll('#log .line.stop, #log .line.warn, #log .line.err').length >= {n}", timeout=T)


def shot(pg, name):
    os.makedirs(SHOTS, exist_ok=True)
    vp = pg.viewport_size
    pg.screenshot(path=os.path.join(SHOTS, f"{name}-{vp['width']}x{vp['height']}.png"))


def shots(pg, name):
    """The screen at both sizes (phone and desktop), then the page's own size again."""
    vp = dict(pg.viewport_size)
    for size in (PHONE, DESKTOP):
        pg.set_viewport_size(size)
        pg.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        shot(pg, name)
    pg.set_viewport_size(vp)


DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs")

# Counts the page's WebSocket attempts (window.__wsTries) and whether the
# pairing form was ever shown (window.__pairShown), from the page's start.
WATCH_LINK = """
window.__wsTries = 0;
window.__pairShown = false;
{
  const W = window.WebSocket;
  window.WebSocket = class extends W { constructor(...a) { super(...a); window.__wsTries++; } };
}
document.addEventListener('DOMContentLoaded', () => {
  const p = document.getElementById('pair');
  const look = () => { if (!p.hidden) window.__pairShown = true; };
  new MutationObserver(look).observe(p, { attributes: true });
  look();
});
"""


def text(pg, sel):
    return pg.eval_on_selector(sel, "e => e.innerText")


# ---------------------------------------------------------------- tests


@test
def assets_gzip_etag_csp(pw, browser):
    env = Env(pw, browser, workspace=False)
    try:
        req = urllib.request.Request(env.relay.base + "/", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            etag = r.headers["ETag"]
            csp = r.headers["Content-Security-Policy"]
            body = gzip.decompress(r.read()).decode()
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
        assert '<script type="module" src="/app.js">' in body
        req = urllib.request.Request(env.relay.base + "/", headers={"If-None-Match": etag})
        try:
            urllib.request.urlopen(req)
            raise AssertionError("expected 304")
        except urllib.error.HTTPError as e:
            assert e.code == 304, e.code
        with urllib.request.urlopen(env.relay.base + "/app.js") as r:
            assert r.headers["Content-Type"].startswith("text/javascript")
            assert "Content-Encoding" not in r.headers
        with urllib.request.urlopen(env.relay.base + "/manifest.webmanifest") as r:
            assert json.loads(r.read())["display"] == "standalone"
    finally:
        env.close()


@test
def installable_and_keyboard(pw, browser):
    env = Env(pw, browser, workspace=False)
    try:
        pg = env.page(viewport=DESKTOP)
        # the service worker controls the page (installable on localhost/https)
        pg.wait_for_function("() => navigator.serviceWorker.getRegistration().then(r => !!(r && r.active))", timeout=T)
        assert pg.evaluate("() => document.querySelector('link[rel=manifest]').href").endswith("/manifest.webmanifest")
        # keyboard only: focus the composer, type, Enter sends; arrows move between screens
        pg.focus("#input")
        pg.keyboard.type("/chunks 1")
        pg.keyboard.press("Escape")  # close the command palette
        pg.keyboard.press("Shift+Enter")
        pg.keyboard.type("by keyboard")
        pg.keyboard.press("Enter")
        wait_done(pg)
        assert "by keyboard" in text(pg, "#log .msg.user")
        pg.focus("#tab-chat")
        pg.keyboard.press("ArrowRight")
        pg.wait_for_selector("#files:not([hidden])", timeout=T)
        assert pg.evaluate("() => document.activeElement.id") == "tab-files"
        pg.keyboard.press("ArrowLeft")
        pg.wait_for_selector("#chat:not([hidden])", timeout=T)
    finally:
        env.close()


@test
def pair_then_refused_token_stops(pw, browser):
    env = Env(pw, browser, workspace=False)
    try:
        pg = env.page(token=False)
        pg.wait_for_selector("#pair:not([hidden])", timeout=T)
        shots(pg, "pairing")
        pg.fill("#tok", env.relay.token)
        pg.click("#pair button[type=submit]")
        connected(pg)
        assert pg.is_hidden("#pair")
        # a stale tab: a wrong token shows the pairing form and stops retrying
        bad = env.browser.new_context(viewport=PHONE)
        env.contexts.append(bad)
        p2 = bad.new_page()
        p2.goto(env.relay.base + "/#token=0000")
        p2.wait_for_selector("#pair:not([hidden])", timeout=T)
        assert "refused" in text(p2, "#pairMsg")
        assert p2.evaluate("() => window.acpRelay.stopped") is True
        assert p2.is_hidden("#banner")
    finally:
        env.close()


@test
def streamed_markdown_is_safe(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page()
        prompt(pg, "/chunks 7\n# Heading\n**bold** and `code` and _em_\n\n- one\n- two\n\n> quoted\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                   "[good](https://example.com/x) [bad](javascript:alert(1)) <b>raw</b> <img src=x onerror=alert(1)>\n\n```\nfenced <i>x</i>\n```")
        wait_done(pg)
        a = "#log .msg.asst"
        pg.wait_for_selector(a + " h1", timeout=T)
        assert text(pg, a + " strong") == "bold"
        assert text(pg, a + " code") == "code"
        assert pg.locator(a + " li").count() == 2
        assert pg.locator(a + " blockquote").count() == 1
        assert pg.locator(a + " table td").count() == 2
        link = pg.locator(a + " a")
        assert link.count() == 1, link.count()
        assert link.get_attribute("href") == "https://example.com/x"
        assert "noopener" in link.get_attribute("rel")
        assert pg.locator(a + " b, " + a + " img, " + a + " i").count() == 0
        body = text(pg, a)
        assert "<b>raw</b>" in body and "<img src=x" in body and "fenced <i>x</i>" in body
        shots(pg, "chat-markdown")
        # the renderer never makes other elements or attributes, whatever the input
        bad = pg.evaluate(r"""async () => {
          const { renderMarkdown } = await import('/markdown.js');
          const ok = new Set(['P','BR','H1','H2','H3','H4','H5','H6','STRONG','EM','S','CODE','PRE','A','UL','OL','LI','BLOCKQUOTE','TABLE','THEAD','TBODY','TR','TH','TD','HR']);
          const attrs = new Set(['href','rel','target','align','start','data-lang']);
          const parts = ['<script>x</script>', '<img src=x onerror=y>', '[a](javascript:x)', '[b](data:text/html,x)', '**', '*', '_', '`', '```', '> ', '- ', '1. ', '| a |', '|---|', '# ', '\n', ' ', 'http://x.y/z', '<http://q>', '[c](http://ok)', '\\', '~~', '[ ]', '![i](http://x)', '<a href=x>', '&lt;'];
          let seed = 7, out = [];
          const rnd = n => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
          for (let k = 0; k < 400; k++) {
            let t = '';
            for (let j = rnd(30); j > 0; j--) t += parts[rnd(parts.length)];
            const d = document.createElement('div');
            d.appendChild(renderMarkdown(t));
            for (const e of d.querySelectorAll('*')) {
              if (!ok.has(e.tagName)) out.push(e.tagName + ' from ' + JSON.stringify(t));
              for (const a of e.attributes) if (!attrs.has(a.name)) out.push(a.name + ' from ' + JSON.stringify(t));
              if (e.tagName === 'A' && !/^https?:/.test(e.getAttribute('href'))) out.push('href ' + e.getAttribute('href'));
            }
          }
          return out.slice(0, 5);
        }""")
        assert not bad, bad
    finally:
        env.close()


@test
def thought_plan_usage_and_stop_reason(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page()
        prompt(pg, "show me around")
        pg.wait_for_selector(".ask:not(.done) button.pri", timeout=T)
        th = pg.locator("#log details.thought")
        assert th.count() == 1 and th.get_attribute("open") is None, "thoughts start collapsed"
        assert pg.locator("#log .plan li").count() == 3
        pg.click(".ask:not(.done) button.pri")
        wait_done(pg)
        pg.wait_for_function("() => document.querySelector('#usage') && /tokens/.test(document.querySelector('#usage').innerText)", timeout=T)
        assert "$" in text(pg, "#usage")
        prompt(pg, "/chunks 1\n/sleep 60000")
        pg.wait_for_selector("#stop:not([hidden])", timeout=T)
        pg.click("#stop")
        pg.wait_for_function("() => document.querySelector('#log').innerText.includes('Stopped: cancelled')", timeout=T)
        shots(pg, "chat-tour")
    finally:
        env.close()


@test
def exit_shows_one_notice(pw, browser):
    env = Env(pw, browser, workspace=False)
    try:
        pg = env.page()
        prompt(pg, "/chunks 1\n/exit")
        pg.wait_for_function("() => document.querySelector('#log').innerText.includes('The agent exited')", timeout=T)
        pg.wait_for_selector("#send:not([hidden])", timeout=T)
        prompt(pg, "/chunks 1\nagain")
        pg.wait_for_function("() => document.querySelector('#log').innerText.includes('echo: /chunks 1\\nagain')", timeout=T)
        wait_done(pg, 2)
        notices = pg.evaluate("() => [...document.querySelectorAll('#log .line.err, #log .line.warn')].map(e => e.innerText)")
        assert len(notices) == 1, notices
    finally:
        env.close()


@test
def ask_on_two_devices_settles_on_both(pw, browser):
    env = Env(pw, browser)
    try:
        a = env.page()
        b = env.page(viewport=DESKTOP)
        # name device b: its name shows in "answered by"
        b.click("#sessBtn")
        b.fill("#devName", "Tablet")
        b.click("#devSave")
        connected(b)
        b.wait_for_function("() => window.acpRelay.clientId.startsWith('tablet-')", timeout=T)
        prompt(a, "/chunks 1\nplease\n/ask")
        a.wait_for_selector(".ask button.pri", timeout=T)
        b.wait_for_selector(".ask button.pri", timeout=T)
        shot(a, "chat-permission")
        shot(b, "chat-permission")
        # the README's phone image is this screen, made by this run
        shutil.copyfile(os.path.join(SHOTS, "chat-permission-390x844.png"), os.path.join(DOCS, "web-phone-chat.png"))
        b.click(".ask button.pri")
        a.wait_for_selector(".ask.done", timeout=T)
        b.wait_for_selector(".ask.done", timeout=T)
        assert "answered by tablet" in text(a, ".ask .n"), text(a, ".ask .n")
        assert "answered by you" in text(b, ".ask .n")
        wait_done(a)
    finally:
        env.close()


@test
def reload_mid_turn_no_duplicate(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page()
        prompt(pg, "/chunks 1\nfirst words\n/sleep 1500\n/context")
        pg.wait_for_function("() => document.querySelector('#log .msg.asst') && document.querySelector('#log .msg.asst').innerText.includes('first words')", timeout=T)
        pg.reload()
        connected(pg)
        wait_done(pg)
        pg.wait_for_function("() => document.querySelector('#log').innerText.includes('context:')", timeout=T)
        assert pg.locator("#log .msg.user").count() == 1
        assert pg.evaluate("() => [...document.querySelectorAll('#log .msg.asst')].filter(e => e.innerText.includes('first words')).length") == 1
        # the header shows the session title, not the raw id
        pg.wait_for_function("() => document.querySelector('#title').innerText.startsWith('/chunks 1')", timeout=T)
        assert "demo-" not in text(pg, "#title")
    finally:
        env.close()


def long_transcript(pg, n=4):
    for i in range(n):
        prompt(pg, f"/chunks 2\nmessage {i}\n" + "\n".join(f"- line {k} of a long answer" for k in range(12)))
        wait_done(pg, i + 1)
    # the page draws what arrived on its next animation frame: let that frame
    # pass, so a scroll made next is the person's, after the last drawing
    pg.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


@test
def restart_shows_banner_and_keeps_scroll(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page(init=WATCH_LINK)
        long_transcript(pg)
        top = pg.evaluate("() => { const l = document.querySelector('#log'); l.scrollTop = Math.floor((l.scrollHeight - l.clientHeight) / 2); l.dispatchEvent(new Event('scroll')); return l.scrollTop; }")
        pg.evaluate("() => { const l = document.querySelector('#log'); l.scrollTop -= 1; l.dispatchEvent(new Event('scroll')); }")
        top = pg.evaluate("() => document.querySelector('#log').scrollTop")
        assert pg.evaluate("() => window.acpRelay.stick") is False
        tries = pg.evaluate("() => window.__wsTries")
        env.relay.stop()
        pg.wait_for_selector("#banner:not([hidden])", timeout=T)
        # an outage of 5 s and more, with several failed tries: the banner
        # only, the pairing form never (it was shown ~3.5 s into an outage once)
        pg.evaluate("() => { window.__down = Date.now(); }")
        pg.wait_for_function(f"() => Date.now() - window.__down >= 5000 && window.__wsTries >= {tries} + 3", timeout=T)
        assert pg.evaluate("() => window.__pairShown") is False, "the pairing form must not cover the transcript during an outage"
        assert pg.is_visible("#banner") and pg.evaluate("() => window.acpRelay.stopped") is False
        shots(pg, "reconnecting")
        env.relay.start(env.relay.port)
        connected(pg)
        pg.wait_for_selector("#banner[hidden]", state="attached", timeout=T)
        pg.wait_for_function(f"() => Math.abs(document.querySelector('#log').scrollTop - {top}) <= 2", timeout=T)
        assert pg.locator("#log .msg.user").count() == 4
        assert pg.evaluate("() => window.__pairShown") is False
    finally:
        env.close()


@test
def silent_link_is_noticed(pw, browser):
    env = Env(pw, browser, workspace=False)
    try:
        pg = env.page()
        # a relay that stops answering keeps the socket open: the page must
        # notice the silence by itself (about 15 s), show the banner and retry
        os.killpg(env.relay.proc.pid, signal.SIGSTOP)
        try:
            # ~15 s (10 s idle, a probe, 5 s for its answer) plus the 2.5 s check tick
            pg.wait_for_selector("#banner:not([hidden])", timeout=25000)
            assert pg.is_hidden("#pair")
        finally:
            os.killpg(env.relay.proc.pid, signal.SIGCONT)
        connected(pg)
        pg.wait_for_selector("#banner[hidden]", state="attached", timeout=T)
    finally:
        env.close()


@test
def watcher_follows_the_stream(pw, browser):
    env = Env(pw, browser)
    try:
        a = env.page()
        w = env.page()
        long_transcript(a, 3)
        prompt(a, "/chunks 3\n" + "\n".join(f"more text {k}" for k in range(30)) + "\n/ask")
        w.wait_for_selector(".ask:not(.done)", timeout=T)
        w.wait_for_function("() => { const l = document.querySelector('#log'); return l.scrollHeight - l.scrollTop - l.clientHeight < 80; }", timeout=T)
        box = w.locator(".ask:not(.done)").bounding_box()
        assert box and box["y"] + box["height"] <= PHONE["height"], box
        a.click(".ask button.pri")
        wait_done(a, 4)
    finally:
        env.close()


@test
def tool_cards_diff_ansi_and_wrapping(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page(viewport={"width": 360, "height": 780})
        long = "x" * 160
        prompt(pg, f"/chunks 1\n/write notes.txt new line\n/run printf '\\033[31mred\\033[0m plain {long}'\n/read README.md\n/read long.txt:150")
        wait_done(pg)
        pg.wait_for_selector(".tool .diff .del", timeout=T)
        assert "old line" in text(pg, ".tool .diff .del")
        assert "new line" in text(pg, ".tool .diff .add")
        pg.wait_for_selector(".tool pre.ansi span.f1", timeout=T)
        assert text(pg, ".tool pre.ansi span.f1") == "red"
        tools = pg.evaluate("() => [...document.querySelectorAll('#log .tool pre')].map(e => e.innerText).join('\\n')")
        assert "red plain" in tools
        assert "\x1b" not in tools and "[31m" not in tools and "[0m" not in tools, tools
        # a location opens the viewer at that line
        assert pg.locator(".tool .locs button").count() >= 1
        overflow = pg.evaluate("() => [document.documentElement.scrollWidth, document.querySelector('#log').scrollWidth, document.querySelector('#log').clientWidth]")
        assert overflow[0] <= 360 and overflow[1] <= overflow[2], overflow
        shots(pg, "chat-tools")
        pg.locator(".tool .locs button", has_text="README.md").first.click()
        pg.wait_for_selector("#files:not([hidden]) .code .ln", timeout=T)
        assert "Demo readme" in text(pg, "#files .code")
        # a location with a line: the viewer marks that line and scrolls to it
        pg.click("#tab-chat")
        loc = pg.locator(".tool .locs button", has_text="long.txt")
        assert loc.count() == 1 and text(pg, ".tool .locs button:has-text('long.txt')").endswith("long.txt:150")
        loc.click()
        pg.wait_for_selector("#files:not([hidden]) .code .ln.hit", timeout=T)
        assert pg.locator("#files .code .ln.hit").count() == 1
        assert text(pg, "#files .code .ln.hit .n") == "150" and "long line 150" in text(pg, "#files .code .ln.hit")
        pg.wait_for_function("""() => { const h = document.querySelector('#files .code .ln.hit').getBoundingClientRect(), b = document.querySelector('#files .body').getBoundingClientRect();
            return h.top >= b.top && h.bottom <= b.bottom; }""", timeout=T)
        shots(pg, "files-at-line")
    finally:
        env.close()


@test
def modes_config_and_palette_reach_the_agent(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page()
        prompt(pg, "/chunks 1\nhello")
        wait_done(pg)
        pg.wait_for_selector("#modeSel", timeout=T)
        pg.select_option("#modeSel", "code")
        pg.wait_for_function("() => document.querySelector('#modeSel').value === 'code'", timeout=T)
        pg.select_option("#cfg-model", "demo-smart")
        pg.wait_for_function("() => document.querySelector('#cfg-model') && document.querySelector('#cfg-model').value === 'demo-smart'", timeout=T)
        pg.fill("#input", "")
        pg.type("#input", "/")
        pg.wait_for_selector("#palette:not([hidden]) li", timeout=T)
        items = text(pg, "#palette")
        assert "/ask" in items and "/settings" in items and "/run" in items, items
        shots(pg, "chat-palette")
        pg.type("#input", "sett")
        pg.keyboard.press("Enter")
        assert pg.input_value("#input").startswith("/settings")
        pg.click("#send")
        wait_done(pg, 2)
        pg.wait_for_function("() => document.querySelector('#log').innerText.includes('settings: mode code; model demo-smart')", timeout=T)
    finally:
        env.close()


@test
def image_attachment_and_agent_login(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page()
        pg.wait_for_selector("#attachBtn:not([hidden])", timeout=T)
        png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
        pg.set_input_files("#fileIn", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": png}])
        pg.wait_for_selector("#attachments .chip", timeout=T)
        prompt(pg, "/chunks 1\nwhat is this")
        wait_done(pg)
        pg.wait_for_function("() => document.querySelector('#log').innerText.includes('image: image/png')", timeout=T)
        assert pg.locator("#log .msg.user img").count() == 1
        # a workspace file as a resource link, picked with @
        pg.fill("#input", "")
        pg.type("#input", "look at ")
        pg.type("#input", "@READ")
        pg.wait_for_selector("#palette:not([hidden]) li:has-text('README.md')", timeout=T)
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#attachments .chip:has-text('README.md')", timeout=T)
        pg.click("#send")
        wait_done(pg, 2)
        pg.wait_for_function("() => /file: file:\\/\\/\\/.+\\/README\\.md/.test(document.querySelector('#log').innerText)", timeout=T)
        pg.click("#sessBtn")
        pg.click("#agentBtn")
        pg.wait_for_selector("#agentSheet:not([hidden]) #authList button", timeout=T)
        pg.click("#authList button")
        pg.wait_for_function("() => document.querySelector('#toast').innerText.includes('Logged in')", timeout=T)
        shots(pg, "agent-login")
    finally:
        env.close()


@test
def workspace_tree_viewer_diff_edit_conflict(pw, browser):
    env = Env(pw, browser)
    ws = env.relay.workspace
    with open(os.path.join(ws, "blob.bin"), "wb") as f:
        f.write(bytes(range(256)) * 5)
    try:
        for vp in (PHONE, DESKTOP):
            pg = env.page(viewport=vp)
            pg.click("#tab-files")
            pg.wait_for_selector("#files ul.tree button[data-path='README.md']", timeout=T)
            pg.wait_for_selector("#files ul.tree button[data-path='README.md'] .gm.M", timeout=T)
            names = text(pg, "#files ul.tree")
            assert "src" in names and "notes.txt" in names and "secret.log" not in names, names
            pg.click("#files ul.tree button[data-path='src']")
            pg.wait_for_selector("#files ul.tree button[data-path='src/main.rs']", timeout=T)
            pg.click("#files ul.tree button[data-path='README.md']")
            pg.wait_for_selector("#files .code .ln", timeout=T)
            assert pg.locator("#files .code .ln").count() == 5
            assert text(pg, "#files .code .ln:nth-child(3) .n") == "3"
            shot(pg, "files")
            pg.click("#tab-changes")
            pg.wait_for_selector("#changes .gst button[data-path='README.md']", timeout=T)
            pg.click("#changes .gst button[data-path='README.md']")
            pg.wait_for_selector("#changes .diff .add", timeout=T)
            assert "CHANGED" in text(pg, "#changes .diff .add")
            assert "second line" in text(pg, "#changes .diff .del")
            shot(pg, "changes")
            pg.context.close()
            env.contexts.remove(pg.context)
        pg = env.page()
        pg.click("#tab-files")
        # a binary file: not shown, its size said
        pg.wait_for_selector("#files ul.tree button[data-path='blob.bin']", timeout=T)
        pg.click("#files ul.tree button[data-path='blob.bin']")
        pg.wait_for_function("() => document.querySelector('#files').innerText.includes('Binary file, 1280 bytes')", timeout=T)
        assert "undefined" not in text(pg, "#files")
        pg.click("#files button.back")
        # edit and save
        pg.click("#files ul.tree button[data-path='notes.txt']")
        pg.wait_for_selector("#files .code .ln", timeout=T)
        pg.click("#files button:has-text('Edit')")
        pg.fill("#files textarea.editor", "edited in the browser\n")
        pg.click("#files button:has-text('Save')")
        wait_for(lambda: open(os.path.join(ws, "notes.txt")).read() == "edited in the browser\n", "the saved file on disk")
        pg.wait_for_selector("#files .code .ln", timeout=T)
        # conflict: the file changes on disk while it is edited
        pg.click("#files button:has-text('Edit')")
        pg.fill("#files textarea.editor", "my version\n")
        with open(os.path.join(ws, "notes.txt"), "w") as f:
            f.write("their version\n")
        pg.click("#files button:has-text('Save')")
        pg.wait_for_selector("#files .conflict pre.theirs", timeout=T)
        assert "their version" in text(pg, "#files .conflict pre.theirs")
        assert "my version" in text(pg, "#files .conflict pre.mine")
        shots(pg, "files-conflict")
        pg.click("#files .conflict button:has-text('Reload')")
        pg.wait_for_function("() => document.querySelector('#files .code') && document.querySelector('#files .code').innerText.includes('their version')", timeout=T)
        assert open(os.path.join(ws, "notes.txt")).read() == "their version\n"
        # an agent's write refreshes the open file
        pg.click("#tab-chat")
        prompt(pg, "/chunks 1\n/write notes.txt written by the agent")
        wait_done(pg)
        pg.click("#tab-files")
        pg.wait_for_function("() => document.querySelector('#files .code').innerText.includes('written by the agent')", timeout=T)
    finally:
        env.close()


# Records system notifications and vibrations as the browser is asked for them.
WATCH_ATTENTION = """
window.__shown = []; window.__vibrated = 0;
{
  const R = window.ServiceWorkerRegistration && ServiceWorkerRegistration.prototype;
  if (R && R.showNotification) { const show = R.showNotification; R.showNotification = function (t, o) { window.__shown.push(t); return show.call(this, t, o); }; }
  if (window.Notification) { const N = window.Notification; window.Notification = class extends N { constructor(t, o) { super(t, o); window.__shown.push(t); } }; }
  const v = navigator.vibrate ? navigator.vibrate.bind(navigator) : null;
  navigator.vibrate = (p) => { window.__vibrated++; try { return v ? v(p) : true; } catch (e) { return false; } };
}
"""


@test
def notification_while_hidden(pw, browser):
    env = Env(pw, browser)
    try:
        a = env.page(perms=["notifications"], init=WATCH_ATTENTION)
        b = env.page()
        # permission granted: the menu's switch says they are on
        a.click("#sessBtn")
        a.wait_for_function("() => document.getElementById('notifyBtn').getAttribute('aria-pressed') === 'true'", timeout=T)
        a.keyboard.press("Escape")
        a.evaluate("""() => {
            Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
            Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        prompt(b, "/chunks 1\nfrom the other device\n/ask")
        # the system notification was shown (by the service worker or the page) and the phone vibrated
        a.wait_for_function("() => window.__shown.length >= 1 && window.__vibrated >= 1", timeout=T)
        assert a.evaluate("() => window.__shown[0]") == "The agent needs you"
        assert a.title().startswith("(1) ")
        b.click(".ask button.pri")
        a.wait_for_function("() => window.__shown.length >= 2 && window.__vibrated >= 2", timeout=T)
        assert a.evaluate("() => window.__shown[1]") == "The agent is done"
        assert a.title().startswith("(2) ")
        # shown again: the count goes
        a.evaluate("""() => {
            Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
            Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'visible' });
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        a.wait_for_function("() => !document.title.startsWith('(')", timeout=T)
    finally:
        env.close()


@test
def lease_viewer_disabled_take_control(pw, browser):
    env = Env(pw, browser, extra=["--lease"])
    try:
        a = env.page()
        prompt(a, "/chunks 1\nmine")
        wait_done(a)
        b = env.page()
        b.wait_for_selector("#leasebar:not([hidden])", timeout=T)
        assert "has control" in text(b, "#leaseTxt")
        assert b.is_disabled("#input") and b.is_disabled("#send")
        shots(b, "lease-viewer")
        # an ask on the viewer: disabled, then enabled once it takes control
        prompt(a, "/chunks 1\n/ask")
        b.wait_for_selector(".ask:not(.done) button.pri", timeout=T)
        assert b.is_disabled(".ask:not(.done) button.pri")
        b.click("#takeBtn")
        b.wait_for_function("() => !document.querySelector('#input').disabled", timeout=T)
        a.wait_for_function("() => document.querySelector('#input').disabled", timeout=T)
        assert "tablet" not in text(a, "#leaseTxt")
        b.wait_for_function("() => !document.querySelector('.ask:not(.done) button.pri').disabled", timeout=T)
        # an answer on its way: a lease change does not enable its buttons again
        b.evaluate("""() => { const ws = window.acpRelay.ws, send = ws.send.bind(ws);
            ws.send = d => { if (!/"result"/.test(d) || !/"id":"perm:/.test(d)) send(d); }; }""")  # the answer never leaves
        b.click(".ask:not(.done) button.pri")
        b.wait_for_function("() => document.querySelector('.ask:not(.done) .n').innerText.startsWith('Sending')", timeout=T)
        a.click("#takeBtn")
        b.wait_for_function("() => document.querySelector('#input').disabled", timeout=T)
        b.click("#takeBtn")
        b.wait_for_function("() => !document.querySelector('#input').disabled", timeout=T)
        assert b.is_disabled(".ask:not(.done) button.pri"), "a lease change enabled an ask that is Sending…"
        assert text(b, ".ask:not(.done) .n").startswith("Sending")
        # the link drops: the ask comes again, open, and can be answered
        b.evaluate("() => window.acpRelay.ws.close()")
        connected(b)
        b.wait_for_function("() => !document.querySelector('.ask:not(.done) button.pri').disabled", timeout=T)
        b.click(".ask:not(.done) button.pri")
        wait_done(a, 2)
        a.click("#takeBtn")
        a.wait_for_function("() => !document.querySelector('#input').disabled", timeout=T)
        # renaming the device that has control keeps control (under the new name)
        a.click("#sessBtn")
        a.fill("#devName", "Desk")
        a.click("#devSave")
        connected(a)
        a.wait_for_function("() => window.acpRelay.clientId.startsWith('desk-')", timeout=T)
        b.wait_for_function("() => document.querySelector('#leaseTxt').innerText.startsWith('desk has control')", timeout=T)
        a.wait_for_function("() => !document.querySelector('#input').disabled && document.querySelector('#leaseTxt').innerText === 'You have control.'", timeout=T)
    finally:
        env.close()


@test
def sessions_menu_delete_and_terminal_tab(pw, browser):
    env = Env(pw, browser, extra=["--terminal"])
    try:
        pg = env.page()
        prompt(pg, "/chunks 1\nfirst session")
        wait_done(pg)
        pg.click("#newBtn")
        pg.wait_for_function("() => document.querySelectorAll('#log .msg').length === 0", timeout=T)
        prompt(pg, "/chunks 1\nsecond session")
        wait_done(pg)
        pg.click("#sessBtn")
        pg.wait_for_function("() => document.querySelectorAll('#slist li .open').length === 2", timeout=T)
        listed = text(pg, "#slist")
        assert "first session" in listed and "second session" in listed, listed
        pg.keyboard.press("Escape")
        # an open ask in another session shows as "needs you" in the list
        prompt(pg, "/chunks 1\nneeds an answer\n/ask")
        pg.wait_for_selector(".ask:not(.done) button.pri", timeout=T)
        pg.click("#sessBtn")
        pg.wait_for_selector("#slist li:has-text('second session') .tag.needs", timeout=T)
        pg.keyboard.press("Escape")
        pg.click(".ask:not(.done) button.pri")
        wait_done(pg, 2)
        pg.click("#sessBtn")
        pg.wait_for_function("() => document.querySelectorAll('#slist li .open').length === 2", timeout=T)
        shots(pg, "sessions")
        pg.locator("#slist li", has_text="first session").locator("button:has-text('Delete')").click()
        pg.wait_for_function("() => document.querySelectorAll('#slist li .open').length === 1", timeout=T)
        assert "first session" not in text(pg, "#slist")
        pg.keyboard.press("Escape")
        # a phone (touch: the key bar shows) opens a terminal; the desktop attaches
        ph = env.page(touch=True)
        for p in (ph, pg):
            if p is pg:
                pg.set_viewport_size(DESKTOP)
            p.click("#tab-term")
            p.wait_for_selector("#term .term-root", timeout=T)
            if p is ph:
                p.click("#term button[aria-label='New terminal']")
                p.wait_for_selector("#term .term-screen:not([hidden]) .term-row", timeout=T)
                p.click("#term .term-screen:not([hidden])")
                p.keyboard.type("printf '\\033[32mgreen\\033[0m and plain\\n'; echo hi from the web\n")
            p.wait_for_function("() => [...document.querySelectorAll('#term .term-screen:not([hidden]) .term-row')].some(r => r.textContent.startsWith('hi from the web'))", timeout=T)
            shot(p, "terminal-tab")
    finally:
        env.close()


def page_at(env, url, viewport=PHONE):
    """A page opened at `url` (e.g. a notification link), connected."""
    ctx = env.browser.new_context(viewport=viewport)
    env.contexts.append(ctx)
    pg = ctx.new_page()
    pg.on("pageerror", lambda e: env.errors.append(f"page error: {e}"))
    pg.goto(url)
    connected(pg)
    return pg


TERM_OUT = "(sel) => [...document.querySelectorAll('#log .tool pre.term-agent')].map(e => e.innerText).join('\\n')"


@test
def agent_terminal_output_lives_in_its_tool_card(pw, browser):
    env = Env(pw, browser)
    gate_a = os.path.join(env.relay.tmp, "gate-a")
    gate_b = os.path.join(env.relay.tmp, "gate-b")
    try:
        pg = env.page()
        # the command prints, waits for the test's gate file, prints again, waits again
        prompt(pg, "/chunks 1\n/run printf 'one \\033[32mgreen\\033[0m\\n'; "
                   f"until [ -e {gate_a} ]; do sleep 0.05; done; printf 'two\\n'; until [ -e {gate_b} ]; do sleep 0.05; done")
        # live output, coloured, while the tool is still running
        pg.wait_for_selector(".tool .st-in_progress", timeout=T)
        pg.wait_for_function("() => [...document.querySelectorAll('#log .tool pre.term-agent')].some(e => e.innerText.includes('one green'))", timeout=T)
        colours = pg.evaluate("() => { const pre = document.querySelector('#log .tool pre.term-agent'); const sp = [...pre.querySelectorAll('span')].find(e => e.textContent === 'green'); return sp && [getComputedStyle(sp).color, getComputedStyle(pre).color]; }")
        assert colours and colours[0] != colours[1], colours
        assert "\x1b" not in pg.evaluate(TERM_OUT) and "[32m" not in pg.evaluate(TERM_OUT)
        # the card grew with the output: the following transcript is at its bottom
        pg.wait_for_function("() => { const l = document.querySelector('#log'); return l.scrollHeight - l.scrollTop - l.clientHeight < 2; }", timeout=T)
        shot(pg, "chat-agent-terminal")
        sid = pg.evaluate("() => window.acpRelay.view.sid")
        # a second device opening the session gets the backlog when the card renders
        d = page_at(env, env.relay.base + f"/#token={env.relay.token}&session={sid}", DESKTOP)
        d.wait_for_function("() => [...document.querySelectorAll('#log .tool pre.term-agent')].some(e => e.innerText.includes('one green'))", timeout=T)
        shot(d, "chat-agent-terminal")
        # its link is down while the command prints more (live output is not
        # replayed): that output comes with the backlog read after the reconnect
        d.context.set_offline(True)
        d.evaluate("() => window.acpRelay.ws && window.acpRelay.ws.close()")
        d.wait_for_function("() => !window.acpRelay.ws || window.acpRelay.ws.readyState !== 1", timeout=T)
        open(gate_a, "w").close()
        pg.wait_for_function("() => [...document.querySelectorAll('#log .tool pre.term-agent')].some(e => e.innerText.includes('two'))", timeout=T)
        assert "two" not in d.evaluate(TERM_OUT)
        d.context.set_offline(False)
        connected(d)
        d.wait_for_function("() => [...document.querySelectorAll('#log .tool pre.term-agent')].some(e => e.innerText.includes('two'))", timeout=T)
        for p in (pg, d):
            out = p.evaluate(TERM_OUT)
            assert out.count("one green") == 1 and out.count("two") == 1, out
            assert p.evaluate("() => document.querySelectorAll('#log .tool pre.term-agent').length") == 1
        open(gate_b, "w").close()
        wait_done(pg)
        # the finished card keeps the output (the agent's final content)
        card = text(pg, "#log .tool:has-text('Run printf')")
        assert "one green" in card and "two" in card, card
        overflow = pg.evaluate("() => document.documentElement.scrollWidth")
        assert overflow <= 390, overflow
    finally:
        env.close()


@test
def agent_log_sheet_shows_stderr(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page()
        prompt(pg, "/chunks 1\nhello")
        wait_done(pg)
        pg.click("#sessBtn")
        pg.click("#agentBtn")
        pg.wait_for_selector("#agentSheet:not([hidden]) #authList button", timeout=T)
        pg.wait_for_function("() => !document.querySelector('#agentLog').innerText.includes('loading')", timeout=T)
        pg.click("#authList button")
        # the agent's stderr line arrives live as _relay/agent/log_line
        pg.wait_for_function("() => [...document.querySelectorAll('#agentLog .stderr')].some(e => e.textContent.includes('demo agent: logged in with'))", timeout=T)
        shot(pg, "agent-log")
        # and is in the log the relay keeps (_relay/agent/log) when the sheet opens again
        pg.click("#agentClose")
        pg.click("#sessBtn")
        pg.click("#agentBtn")
        pg.wait_for_function("() => [...document.querySelectorAll('#agentLog .stderr')].some(e => e.textContent.includes('demo agent: logged in with'))", timeout=T)
        n = pg.evaluate("() => [...document.querySelectorAll('#agentLog div')].filter(e => e.textContent.includes('logged in with')).length")
        assert n == 1, n
        pg.set_viewport_size(DESKTOP)
        shot(pg, "agent-log")
    finally:
        env.close()


@test
def session_link_opens_that_session(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page()
        prompt(pg, "/chunks 1\nalpha session")
        wait_done(pg)
        a = pg.evaluate("() => window.acpRelay.view.sid")
        pg.click("#newBtn")
        pg.wait_for_function("() => document.querySelectorAll('#log .msg').length === 0", timeout=T)
        prompt(pg, "/chunks 1\nbeta session")
        wait_done(pg)
        b = pg.evaluate("() => window.acpRelay.view.sid")
        assert a and b and a != b, (a, b)
        # a notification link on a paired device: #session= only, the token kept
        first = page_at(env, env.relay.url)
        ctx = first.context
        first.close()
        d = ctx.new_page()
        d.on("pageerror", lambda e: env.errors.append(f"page error: {e}"))
        d.goto(env.relay.base + f"/#session={a}")
        connected(d)
        d.wait_for_function(f"() => window.acpRelay.view.sid === {json.dumps(a)} && document.querySelector('#log').innerText.includes('alpha session')", timeout=T)
        assert "beta session" not in text(d, "#log")
        assert "session=" not in d.evaluate("() => location.hash") and "token=" not in d.evaluate("() => location.hash")
        # a link followed in the open tab (hashchange) switches the session
        d.evaluate(f"() => {{ location.hash = 'session={b}'; }}")
        d.wait_for_function(f"() => window.acpRelay.view.sid === {json.dumps(b)} && document.querySelector('#log').innerText.includes('beta session')", timeout=T)
        assert "alpha session" not in text(d, "#log")
        shot(d, "session-link")
        # a link to a session the relay does not have says so and keeps the view
        d.evaluate("() => { location.hash = 'session=no-such-session'; }")
        d.wait_for_function("() => document.querySelector('#toast').innerText.includes('no-such-session')", timeout=T)
        assert d.evaluate("() => window.acpRelay.view.sid") == b
        assert "beta session" in text(d, "#log")
        # token and session in one link (a fresh device)
        f = page_at(env, env.relay.base + f"/#token={env.relay.token}&session={a}", DESKTOP)
        f.wait_for_function(f"() => window.acpRelay.view.sid === {json.dumps(a)} && document.querySelector('#log').innerText.includes('alpha session')", timeout=T)
        shot(f, "session-link")
    finally:
        env.close()


CONTRAST = """(sel) => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null; const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
  const lum = ({ r, g, b }) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const bg = e => { while (e) { const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; e = e.parentElement; } return { r: 255, g: 255, b: 255 }; };
  const out = [];
  for (const e of document.querySelectorAll(sel)) {
    if (!e.offsetParent && e !== document.body) continue;
    const fg = parse(getComputedStyle(e).color), b = bg(e);
    const L1 = lum(fg), L2 = lum(b);
    out.push([sel, e.innerText.slice(0, 20), (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05)]);
  }
  return out;
}"""


# Buttons and selects shown under `root` smaller than 44 px either way.
SMALL_TAPS = """(root) => [...document.querySelectorAll(root + ' button, ' + root + ' select')]
  .filter(b => b.offsetParent && (b.getBoundingClientRect().height < 44 || b.getBoundingClientRect().width < 44))
  .map(b => (b.id || b.innerText || b.className) + ' ' + Math.round(b.getBoundingClientRect().width) + 'x' + Math.round(b.getBoundingClientRect().height))"""


def low_contrast(pg, sels):
    results = []
    for sel in sels:
        results += pg.evaluate(CONTRAST, sel)
    return results, [r for r in results if r[2] < 4.5]


@test
def contrast_overflow_and_tap_targets(pw, browser):
    env = Env(pw, browser)
    try:
        for scheme in ("light", "dark"):
            # a phone: touch, a coarse pointer
            pg = env.page(viewport={"width": 360, "height": 780}, scheme=scheme, touch=True)
            assert pg.evaluate("() => matchMedia('(pointer:coarse)').matches"), "the touch context has a coarse pointer"
            prompt(pg, "/chunks 1\nsome **text** with `code`\n/write notes.txt new line\n/ask")
            pg.wait_for_selector(".ask:not(.done) button.pri", timeout=T)
            pg.wait_for_selector("#log .tool .diff .add", timeout=T)
            results, bad = low_contrast(pg, ["body", "#log .msg.asst", "#log .msg.user", ".mut", "button", "button.pri", "button.dan", ".tag", "nav#tabs button",
                                             "#log code", "#log .diff .add", "#log .diff .del", "#log .diff .dp"])
            assert results and not bad, f"{scheme}: {bad}"
            small = pg.evaluate(SMALL_TAPS, "body")
            assert not small, f"{scheme} chat: tap targets under 44 px: {small}"
            pg.click(".ask:not(.done) button.pri")
            pg.wait_for_function("() => document.querySelectorAll('.ask:not(.done)').length === 0", timeout=T)
            wait_done(pg)
            # a warning line (a stopped turn) and the banner (shown here only to measure its colours)
            prompt(pg, "/chunks 1\n/sleep 60000")
            pg.wait_for_selector("#stop:not([hidden])", timeout=T)
            pg.click("#stop")
            pg.wait_for_selector("#log .line.warn", timeout=T)
            pg.evaluate("() => { const b = document.getElementById('banner'); b.hidden = false; b.textContent = 'Reconnecting to the relay… your view is kept.'; }")
            results, bad = low_contrast(pg, ["#log .line.warn", "#banner", "#log .line.stop"])
            assert len(results) >= 2 and not bad, f"{scheme}: {bad}"
            pg.evaluate("() => { document.getElementById('banner').hidden = true; }")
            # the sessions menu
            pg.click("#sessBtn")
            pg.wait_for_selector("#slist li .open", timeout=T)
            small = pg.evaluate(SMALL_TAPS, "#menu")
            assert not small, f"{scheme} sessions: tap targets under 44 px: {small}"
            results, bad = low_contrast(pg, ["#menu", "#menu .mut", "#menu button", "#menu .tag"])
            assert results and not bad, f"{scheme} sessions: {bad}"
            pg.keyboard.press("Escape")
            # files: the tree, then the viewer's bar
            pg.click("#tab-files")
            pg.wait_for_selector("#files ul.tree button[data-path='README.md']", timeout=T)
            small = pg.evaluate(SMALL_TAPS, "#files")
            assert not small, f"{scheme} files: tap targets under 44 px: {small}"
            pg.click("#files ul.tree button[data-path='README.md']")
            pg.wait_for_selector("#files .code .ln", timeout=T)
            small = pg.evaluate(SMALL_TAPS, "#files")
            assert not small, f"{scheme} file viewer: tap targets under 44 px: {small}"
            results, bad = low_contrast(pg, ["#files .code .c", "#files .code .n", "#files .bar .p"])
            assert results and not bad, f"{scheme} files: {bad}"
            # changes: the list, then a coloured diff
            pg.click("#tab-changes")
            pg.wait_for_selector("#changes .gst button[data-path='README.md']", timeout=T)
            small = pg.evaluate(SMALL_TAPS, "#changes")
            assert not small, f"{scheme} changes: tap targets under 44 px: {small}"
            pg.click("#changes .gst button[data-path='README.md']")
            pg.wait_for_selector("#changes .diff .add", timeout=T)
            small = pg.evaluate(SMALL_TAPS, "#changes")
            assert not small, f"{scheme} diff: tap targets under 44 px: {small}"
            results, bad = low_contrast(pg, ["#changes .diff .add", "#changes .diff .del", "#changes .diff .hunk", "#changes .diff .meta", "#changes .gst .s", "#changes .gst .f"])
            assert results and not bad, f"{scheme} changes: {bad}"
            for tab in ("chat", "files", "changes", "term"):
                pg.click(f"#tab-{tab}")
                w = pg.evaluate("() => document.documentElement.scrollWidth")
                assert w <= 360, f"{scheme} {tab}: page is {w} px wide at 360"
            if scheme == "dark":
                pg.click("#tab-chat")
                shots(pg, "chat-dark")
                pg.click("#tab-changes")
                shots(pg, "changes-dark")
    finally:
        env.close()


@test
def new_session_in_another_project_with_another_agent(pw, browser):
    import tempfile
    root = tempfile.mkdtemp(prefix="acp-relay-web-projects-")
    dirs = {}
    for name in ("api", "web"):
        dirs[name] = os.path.realpath(os.path.join(root, name))
        os.makedirs(dirs[name])
        with open(os.path.join(dirs[name], f"only-{name}.txt"), "w") as f:
            f.write(f"{name} file\n")
    binary = os.path.abspath(BIN)
    extra = ["--workspace", f"api={dirs['api']}", "--workspace", f"web={dirs['web']}"]
    for agent in ("one", "two"):
        extra += ["--agent", f"{agent}={binary} demo-agent --state-dir {os.path.join(root, 'state-' + agent)}"]
    env = Env(pw, browser, extra=extra, workspace=False)
    try:
        pg = env.page()
        # by keyboard: the sheet takes the focus, Escape gives it back to New
        pg.focus("#newBtn")
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#newSheet:not([hidden])", timeout=T)
        assert pg.evaluate("() => document.activeElement.id") == "newProject"
        pg.keyboard.press("Escape")
        pg.wait_for_selector("#newSheet", state="hidden", timeout=T)
        assert pg.evaluate("() => document.activeElement.id") == "newBtn"
        pg.click("#newBtn")
        pg.wait_for_selector("#newSheet:not([hidden])", timeout=T)
        assert pg.eval_on_selector_all("#newProject option", "os => os.map(o => o.value)") == ["ws", "api", "web"]
        assert pg.eval_on_selector_all("#newAgent option", "os => os.map(o => o.value)") == ["one", "two"]
        pg.select_option("#newProject", "web")
        pg.select_option("#newAgent", "two")
        assert dirs["web"] in text(pg, "#newPath")
        shots(pg, "new-session-sheet")
        pg.click("#newStart")
        pg.wait_for_selector("#newSheet", state="hidden", timeout=T)
        pg.wait_for_function("() => document.getElementById('sub').innerText.includes('web · two')", timeout=T)
        prompt(pg, "/chunks 1\n/read only-web.txt\n/run pwd")
        wait_done(pg)
        log = text(pg, "#log")
        assert "read ok" in log and dirs["web"] in log, log
        pg.click("#tab-files")
        pg.wait_for_selector("#files .tree button[data-path='only-web.txt']", timeout=T)
        # a second session, in api on agent one: the files follow the project
        pg.click("#tab-chat")
        pg.click("#newBtn")
        pg.wait_for_selector("#newSheet:not([hidden])", timeout=T)
        assert pg.eval_on_selector("#newProject", "s => s.value") == "web", "the last choice first"
        pg.select_option("#newProject", "api")
        pg.select_option("#newAgent", "one")
        pg.click("#newStart")
        pg.wait_for_function("() => document.getElementById('sub').innerText.includes('api · one')", timeout=T)
        prompt(pg, "/chunks 1\nhello api")
        wait_done(pg)
        pg.click("#tab-files")
        pg.wait_for_selector("#files .tree button[data-path='only-api.txt']", timeout=T)
        assert pg.query_selector("#files .tree button[data-path='only-web.txt']") is None
        pg.click("#tab-chat")
        pg.click("#sessBtn")
        pg.wait_for_selector("#slist li.grp:has-text('web')", timeout=T)
        pg.wait_for_selector("#slist li.grp:has-text('api')", timeout=T)
        pg.wait_for_selector("#slist li .tag.agent:has-text('two')", timeout=T)
        groups = pg.eval_on_selector_all("#slist li.grp", "ls => ls.map(l => l.firstChild.textContent.trim())")
        assert groups == ["api", "web"], groups
        shots(pg, "sessions-by-project")
        pg.keyboard.press("Escape")
        # the agent sheet is this session's agent's
        pg.click("#sessBtn")
        pg.click("#agentBtn")
        pg.wait_for_function("() => document.getElementById('agentName').innerText.startsWith('one')", timeout=T)
        pg.click("#agentClose")
        # the choice is remembered: the page, loaded again, offers web and two
        pg2 = pg
        pg2.reload()
        connected(pg2)
        pg2.click("#newBtn")
        pg2.wait_for_selector("#newSheet:not([hidden])", timeout=T)
        assert pg2.eval_on_selector("#newProject", "s => s.value") == "api"
        assert pg2.eval_on_selector("#newAgent", "s => s.value") == "one"
        w = pg2.evaluate("() => document.documentElement.scrollWidth")
        assert w <= PHONE["width"], f"page is {w} px wide"
    finally:
        env.close()
        import shutil
        shutil.rmtree(root, ignore_errors=True)


# After this resolves, every import('./term.js') the page started has run its
# callback (module loads resolve in order), and a frame was drawn.
TERM_SETTLED = "() => import('/term.js').then(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))))"


@test
def tour_cards_keep_no_stale_terminal(pw, browser):
    env = Env(pw, browser)
    try:
        pg = env.page()
        # the tour's command finishes at once: its card gets the agent's final
        # text, and no terminal view mounted after it (empty, its terminal released)
        for i in range(3):
            prompt(pg, "show me around")
            pg.wait_for_selector(".ask:not(.done) button.pri", timeout=T)
            pg.click(".ask:not(.done) button.pri")
            wait_done(pg, i + 1)
            pg.evaluate(TERM_SETTLED)
            cards = pg.evaluate("""() => [...document.querySelectorAll('#log .tool')].filter(c => c.querySelector('.st-completed, .st-failed'))
                .map(c => [c.innerText, c.querySelectorAll('pre.term-agent').length, [...c.querySelectorAll('pre.term-agent')].filter(p => !p.textContent.trim()).length])""")
            run = [c for c in cards if c[0].startswith("Run echo hello from the terminal")]
            assert len(run) == i + 1 and all("hello from the terminal" in c[0] for c in run), cards
            stale = [c for c in cards if c[1]]
            assert not stale, f"tour {i}: finished cards with a terminal view: {stale}"
        shots(pg, "chat-tour-finished")
    finally:
        env.close()


@test
def needs_you_badge_from_another_session(pw, browser):
    env = Env(pw, browser)
    try:
        a = env.page()
        prompt(a, "/chunks 1\nsession of device a")
        wait_done(a)
        sid_a = a.evaluate("() => window.acpRelay.view.sid")
        assert a.is_hidden("#needsBadge")
        # device b starts its own session and the agent asks there
        b = env.page(viewport=DESKTOP)
        b.click("#newBtn")
        b.wait_for_function(f"() => window.acpRelay.view.sid && window.acpRelay.view.sid !== {json.dumps(sid_a)}", timeout=T)
        prompt(b, "/chunks 1\nsession of device b\n/ask")
        b.wait_for_selector(".ask:not(.done) button.pri", timeout=T)
        # a never saw that ask (another session): the relay's pendingAsks tell it
        a.wait_for_selector("#needsBadge:not([hidden])", timeout=T)
        assert text(a, "#needsBadge") == "1"
        assert a.locator("#log .ask").count() == 0
        assert a.evaluate("() => window.acpRelay.view.sid") == sid_a
        a.click("#sessBtn")
        a.wait_for_selector("#slist li:has-text('session of device b') .tag.needs", timeout=T)
        # a busy session says so (b's turn waits for the answer)
        a.wait_for_selector("#slist li:has-text('session of device b') .tag.busy", timeout=T)
        assert a.locator("#slist li:has-text('session of device a') .tag.needs").count() == 0
        shots(a, "sessions-needs-you")
        a.keyboard.press("Escape")
        b.click(".ask:not(.done) button.pri")
        wait_done(b)
        a.wait_for_selector("#needsBadge", state="hidden", timeout=T)
    finally:
        env.close()


@test
def busy_while_a_turn_runs(pw, browser):
    env = Env(pw, browser, workspace=False)
    try:
        pg = env.page()
        prompt(pg, "/chunks 1\nfirst\n/sleep 60000")
        pg.wait_for_selector("#stop:not([hidden])", timeout=T)
        pg.wait_for_function("() => document.getElementById('sub').innerText.includes('working')", timeout=T)
        pg.click("#sessBtn")
        pg.wait_for_selector("#slist li .open[aria-current=true] .tag.busy", timeout=T)
        # a busy session cannot be deleted
        assert pg.locator("#slist li:has(.open[aria-current=true]) button:has-text('Delete')").is_disabled()
        pg.keyboard.press("Escape")
        pg.click("#stop")
        pg.wait_for_selector("#send:not([hidden])", timeout=T)
        pg.wait_for_function("() => !document.getElementById('sub').innerText.includes('working')", timeout=T)
        pg.click("#sessBtn")
        pg.wait_for_selector("#slist li .open[aria-current=true]", timeout=T)
        pg.wait_for_function("() => !document.querySelector('#slist li .open[aria-current=true] .tag.busy')", timeout=T)
    finally:
        env.close()


class SlotHolder:
    """An authenticated device socket that answers pings: one of the relay's connection slots."""

    def __init__(self, relay):
        self.sock = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
        self.sock.sendall((f"GET /ws?client_id=holder&token={relay.token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "the relay closed the holder's upgrade"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        self.rest = head.split(b"\r\n\r\n", 1)[1]
        self.sock.settimeout(None)
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = self.rest
        try:
            while True:
                while len(buf) >= 2:
                    op, n = buf[0] & 0x0F, buf[1] & 0x7F
                    at = 2
                    if n == 126:
                        if len(buf) < 4:
                            break
                        n, at = int.from_bytes(buf[2:4], "big"), 4
                    elif n == 127:
                        if len(buf) < 10:
                            break
                        n, at = int.from_bytes(buf[2:10], "big"), 10
                    if len(buf) < at + n:
                        break
                    payload, buf = buf[at:at + n], buf[at + n:]
                    if op == 0x9:  # ping: a masked pong (zero mask)
                        with self.lock:
                            self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError:
            return

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


@test
def full_relay_keeps_the_banner(pw, browser):
    env = Env(pw, browser, extra=["--max-conns", "1"], workspace=False)
    holder = SlotHolder(env.relay)
    try:
        pg = env.page(init=WATCH_LINK, wait=False)
        # each upgrade is refused with 503 (the relay is full): an outage, not
        # a refused token; the page keeps trying behind the banner
        pg.wait_for_function("() => window.__wsTries >= 4", timeout=T)
        assert pg.is_visible("#banner"), "the banner shows while the relay is full"
        assert pg.evaluate("() => window.__pairShown") is False, "the pairing form must not show for a full relay"
        assert pg.evaluate("() => window.acpRelay.stopped") is False
        shots(pg, "connecting-full-relay")
        holder.close()
        connected(pg)
        pg.wait_for_selector("#banner", state="hidden", timeout=T)
        assert pg.evaluate("() => window.__pairShown") is False
    finally:
        holder.close()
        env.close()


@test
def new_activity_pill(pw, browser):
    env = Env(pw, browser)
    try:
        a = env.page()
        long_transcript(a, 3)
        a.evaluate("() => { const l = document.querySelector('#log'); l.scrollTop = Math.floor((l.scrollHeight - l.clientHeight) / 2); l.dispatchEvent(new Event('scroll')); }")
        a.evaluate("() => { const l = document.querySelector('#log'); l.scrollTop -= 1; l.dispatchEvent(new Event('scroll')); }")
        assert a.evaluate("() => window.acpRelay.stick") is False
        assert a.is_hidden("#pill")
        top = a.evaluate("() => document.querySelector('#log').scrollTop")
        # another device streams into the session: a's place is kept, the pill shows
        b = env.page(viewport=DESKTOP)
        prompt(b, "/chunks 3\n" + "\n".join(f"streamed from b {k}" for k in range(20)))
        wait_done(b, 4)
        a.wait_for_function("() => document.querySelector('#log').innerText.includes('streamed from b 19')", timeout=T)
        a.wait_for_selector("#pill:not([hidden])", timeout=T)
        assert abs(a.evaluate("() => document.querySelector('#log').scrollTop") - top) <= 2
        shots(a, "chat-new-activity")
        a.click("#pill")
        a.wait_for_function("() => { const l = document.querySelector('#log'); return l.scrollHeight - l.scrollTop - l.clientHeight < 2; }", timeout=T)
        a.wait_for_selector("#pill", state="hidden", timeout=T)
        assert a.evaluate("() => window.acpRelay.stick") is True
    finally:
        env.close()


@test
def cards_keyed_per_turn_and_a_released_terminal(pw, browser):
    env = Env(pw, browser, workspace=False)
    try:
        pg = env.page()
        # two turns whose tool calls share an id (an agent that restarted and
        # counts from 1 again): two cards, the first one left as it was
        pg.evaluate("""() => {
          const tr = window.acpRelay.transcript;
          const user = (pid, text) => tr.onUpdate({ update: { sessionUpdate: 'user_message_chunk', content: { type: 'text', text } }, _meta: { relay: { promptId: pid } } }, false);
          const tool = (title, status) => tr.onUpdate({ update: { sessionUpdate: 'tool_call', toolCallId: 'tool-1', title, kind: 'read', status } }, false);
          user('p1', 'first turn'); tool('first tool', 'failed');
          user('p2', 'second turn'); tool('second tool', 'in_progress');
          tr.onUpdate({ update: { sessionUpdate: 'tool_call_update', toolCallId: 'tool-1', status: 'completed' } }, false);
        }""")
        cards = pg.evaluate("() => [...document.querySelectorAll('#log .tool[data-tool=\"tool-1\"]')].map(c => [c.dataset.turn, c.querySelector('.t').textContent, c.querySelector('.tag[class*=st-]').textContent])")
        assert len(cards) == 2, cards
        assert cards[0][1] == "first tool" and cards[1][1] == "second tool", cards
        assert cards[0][0] != cards[1][0], cards
        assert cards[0][2] == "failed" and cards[1][2] == "completed", cards
        # a card naming an agent terminal the relay no longer has (released
        # before this device read it): the view says so, not "no output yet"
        pg.evaluate("""() => {
          const tr = window.acpRelay.transcript;
          tr.onUpdate({ update: { sessionUpdate: 'user_message_chunk', content: { type: 'text', text: 'late device' } }, _meta: { relay: { promptId: 'p3' } } }, false);
          tr.onUpdate({ update: { sessionUpdate: 'tool_call', toolCallId: 'gone-1', title: 'Run gone', kind: 'execute', status: 'in_progress' } }, false);
          tr.onUpdate({ update: { sessionUpdate: 'tool_call_update', toolCallId: 'gone-1', content: [{ type: 'terminal', terminalId: 'no-such-terminal' }] } }, false);
        }""")
        pg.wait_for_selector("#log .tool pre.term-agent.released", timeout=T)
        before = pg.evaluate("() => getComputedStyle(document.querySelector('#log .tool pre.term-agent'), '::before').content")
        assert "terminal released" in before, before
        assert pg.locator("#log .tool pre.term-agent").count() == 1
    finally:
        env.close()


@test
def dialogs_by_keyboard(pw, browser):
    env = Env(pw, browser, workspace=False)
    try:
        pg = env.page(viewport=DESKTOP)
        prompt(pg, "/chunks 1\na session to list")
        wait_done(pg)
        # the sessions menu: Enter opens it with the focus inside, Escape closes it and the focus comes back
        pg.focus("#sessBtn")
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#menu:not([hidden])", timeout=T)
        assert pg.evaluate("() => document.getElementById('menu').contains(document.activeElement)")
        assert pg.get_attribute("#sessBtn", "aria-expanded") == "true"
        # a row with the focus keeps it when the list is drawn again (it is polled)
        pg.wait_for_selector("#slist li .open", timeout=T)
        pg.focus("#slist li .open")
        redrawn = pg.evaluate("""() => new Promise(ok => {
            const ul = document.getElementById('slist');
            new MutationObserver((m, o) => { o.disconnect(); setTimeout(() => ok(document.activeElement.classList.contains('open') && ul.contains(document.activeElement)), 0); })
              .observe(ul, { childList: true });
            document.getElementById('refBtn').click();
        })""")
        assert redrawn, "the focus left the list when it was drawn again"
        pg.keyboard.press("Escape")
        pg.wait_for_selector("#menu", state="hidden", timeout=T)
        assert pg.evaluate("() => document.activeElement.id") == "sessBtn"
        assert pg.get_attribute("#sessBtn", "aria-expanded") == "false"
        # the agent sheet, reached from the menu by keyboard
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#menu:not([hidden])", timeout=T)
        pg.focus("#agentBtn")
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#agentSheet:not([hidden])", timeout=T)
        assert pg.is_hidden("#menu")
        assert pg.evaluate("() => document.getElementById('agentSheet').contains(document.activeElement)")
        pg.keyboard.press("Escape")
        pg.wait_for_selector("#agentSheet", state="hidden", timeout=T)
        assert pg.evaluate("() => document.activeElement.id") == "sessBtn"
        # the close button works by keyboard too
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#menu:not([hidden])", timeout=T)
        pg.focus("#agentBtn")
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#agentSheet:not([hidden])", timeout=T)
        assert pg.evaluate("() => document.activeElement.id") == "agentClose"
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#agentSheet", state="hidden", timeout=T)
        assert pg.evaluate("() => document.activeElement.id") == "sessBtn"
    finally:
        env.close()


@test
def png_icons_are_served(pw, browser):
    env = Env(pw, browser, workspace=False)
    try:
        with urllib.request.urlopen(env.relay.base + "/manifest.webmanifest") as r:
            icons = json.loads(r.read())["icons"]
        pngs = {i["sizes"]: i["src"] for i in icons if i["type"] == "image/png"}
        assert pngs.get("192x192") and pngs.get("512x512"), icons
        pg = env.page()
        touch = pg.evaluate("() => { const l = document.querySelector('link[rel=apple-touch-icon]'); return [l.getAttribute('href'), l.sizes.value]; }")
        assert touch[1] == "180x180", touch
        for src, size in ((touch[0], 180), (pngs["192x192"], 192), (pngs["512x512"], 512)):
            with urllib.request.urlopen(env.relay.base + src) as r:
                assert r.headers["Content-Type"] == "image/png", src
                assert r.headers["ETag"], src
                body = r.read()
            assert body[:8] == b"\x89PNG\r\n\x1a\n", src
            w, h = int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")
            assert (w, h) == (size, size), (src, w, h)
            # the browser decodes it
            got = pg.evaluate("src => new Promise((ok, no) => { const i = new Image(); i.onload = () => ok([i.naturalWidth, i.naturalHeight]); i.onerror = () => no('bad image ' + src); i.src = src; })", src)
            assert got == [size, size], (src, got)
    finally:
        env.close()


def main():
    # SIGTERM (test-web.sh's trap) must still run the relays' cleanup (atexit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    failed = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        try:
            for fn in TESTS:
                if ONLY and fn.__name__ not in ONLY:
                    continue
                try:
                    fn(pw, browser)
                    print(f"ok      {fn.__name__}", flush=True)
                except Exception:  # noqa: BLE001
                    failed.append(fn.__name__)
                    print(f"FAILED  {fn.__name__}\n{traceback.format_exc()}", flush=True)
        finally:
            browser.close()
    print(f"web tests: {len(failed)} failed" + (": " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
