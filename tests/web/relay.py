"""Starts the real acp-relay binary for browser tests: its own temp dirs,
port 0, killed on exit (even on failure)."""
import atexit, os, re, shutil, signal, subprocess, tempfile, time

DEADLINE = 20.0


def wait_for(cond, what, timeout=DEADLINE, every=0.05):
    """Polls cond() until it is truthy; fails with `what` after timeout."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


class Relay:
    def __init__(self, binary, extra=(), workspace=None, data=None):
        self.binary = binary
        self.extra = list(extra)
        self.tmp = tempfile.mkdtemp(prefix="acp-relay-web-")
        self.workspace = workspace or os.path.join(self.tmp, "ws")
        self.data = data or os.path.join(self.tmp, "data")
        self.home = os.path.join(self.tmp, "home")
        for d in (self.workspace, self.data, self.home):
            os.makedirs(d, exist_ok=True)
        self.proc = None
        self.port = 0
        atexit.register(self.cleanup)

    def start(self, port=0):
        env = dict(os.environ, HOME=self.home, SHELL="/bin/sh", XDG_STATE_HOME=os.path.join(self.home, "state"), RUST_LOG="info")
        self.out = open(os.path.join(self.tmp, "relay.out"), "ab")
        self.err = open(os.path.join(self.tmp, "relay.err"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", f"127.0.0.1:{port}", "--workspace", self.workspace, "--data-dir", self.data, *self.extra],
            stdout=subprocess.PIPE, stderr=self.err, env=env, start_new_session=True,
        )
        lines = []
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise AssertionError("relay exited before printing its URL: " + "".join(lines))
            lines.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                # the token file is written before the relay listens
                with open(os.path.join(self.data, "token")) as f:
                    self.token = f.read().strip()
                self.url = f"http://127.0.0.1:{self.port}/#token={self.token}"
                break
        else:
            raise AssertionError("no URL from the relay")
        # keep draining stdout so the relay never blocks on it
        import threading
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        p = self.proc
        for chunk in iter(lambda: p.stdout.read(4096), b""):
            self.out.write(chunk)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def restart(self):
        port = self.port
        self.stop()
        return self.start(port)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
