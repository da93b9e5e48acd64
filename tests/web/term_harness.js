// A bare page for term.js alone (used by test_terminal.py when the relay does
// not serve the full web client): one WebSocket to the relay, the api that
// mountTerminals expects, nothing else.
const q = new URLSearchParams(location.hash.slice(1));
const listeners = new Map();
const pending = new Map();
let next = 1;
let ws = null;
window.__termOpens = 0;
function connect() {
  ws = new WebSocket(`ws://${location.host}/ws?client_id=${encodeURIComponent(q.get('client'))}&token=${encodeURIComponent(q.get('token'))}`);
  ws.addEventListener('open', () => { window.__termOpens += 1; });
  ws.addEventListener('message', (ev) => {
    let m; try { m = JSON.parse(ev.data); } catch (e) { return; }
    if (m.id != null && !m.method && pending.has(m.id)) {
      const { res, rej } = pending.get(m.id); pending.delete(m.id);
      if (m.error) rej(new Error(m.error.message)); else res(m.result);
    } else if (m.method) {
      for (const fn of listeners.get(m.method) || []) fn(m.params);
    }
  });
  ws.addEventListener('close', () => setTimeout(connect, 200));
}
connect();
const api = {
  async request(method, params) {
    while (!ws || ws.readyState !== WebSocket.OPEN) await new Promise((r) => setTimeout(r, 20));
    const id = next++;
    return new Promise((res, rej) => { pending.set(id, { res, rej }); ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params })); });
  },
  on(method, fn) { if (!listeners.has(method)) listeners.set(method, new Set()); listeners.get(method).add(fn); return () => listeners.get(method).delete(fn); },
  isController: () => true,
};
window.__termReconnect = () => ws.close();
const m = await import('./term.js');
window.__term = m.mountTerminals(document.getElementById('host'), api);
window.__api = api;
window.__termModule = m;
document.body.dataset.ready = '1';
