// Agent terminals (ACP `terminal/create`) shown live in their tool cards: the
// backlog from `_relay/agent_terminal/read {terminalId}` (the agent's
// `terminal/output` answer: {output, truncated, exitStatus?}) when a card
// shows the terminal and again after every reconnect, then the live
// `_relay/agent_terminal/output {sessionId, terminalId, data}` appended.
// Escape codes render as colour (ansiNodes), never raw. Bounded per terminal.
import { el } from './dom.js';
import { ansiNodes } from './markdown.js';

// Characters of output kept per terminal (the newest; older text is cut at a line).
export const MAX_TERM_CHARS = 64 * 1024;
// Terminals whose output is kept; the least recently used goes first.
const MAX_TERMS = 32;
// Output that arrives while a backlog read is on its way, kept to merge with it.
const MAX_PENDING_CHARS = MAX_TERM_CHARS;

export class AgentTerminals {
  constructor(request) {
    this.request = request; // (method, params) -> Promise
    this.terms = new Map(); // terminalId -> state
    this.raf = 0;
    this.dirty = new Set();
  }

  state(tid) {
    let t = this.terms.get(tid);
    if (t) { this.terms.delete(tid); this.terms.set(tid, t); return t; }
    t = { id: tid, text: '', cut: false, exit: null, gone: false, fresh: false, reading: false, pending: null, views: new Set() };
    this.terms.set(tid, t);
    // the least recently used goes first, one no card shows if there is one
    while (this.terms.size > MAX_TERMS) {
      let victim = null;
      for (const o of this.terms.values()) if (o !== t && !this.shown(o)) { victim = o; break; }
      this.terms.delete((victim || this.terms.values().next().value).id);
    }
    return t;
  }

  // A node showing terminal `tid` (for a tool card); fetches its backlog.
  view(tid) {
    const t = this.state(String(tid || ''));
    const pre = el('pre', 'ansi term-out');
    pre.dataset.terminal = t.id;
    pre.setAttribute('aria-label', 'Output of terminal ' + t.id);
    t.views.add(pre);
    this.paint(t, pre);
    if (!t.fresh) this.read(t);
    return pre;
  }

  // `_relay/agent_terminal/output`: live output.
  output(p) {
    if (!p || typeof p.data !== 'string' || p.terminalId == null) return;
    const t = this.terms.get(String(p.terminalId)) || this.state(String(p.terminalId));
    if (t.reading) {
      t.pending = (t.pending || '') + p.data;
      if (t.pending.length > MAX_PENDING_CHARS) t.pending = t.pending.slice(-MAX_PENDING_CHARS);
      return;
    }
    this.append(t, p.data);
    this.later(t);
  }

  // After a reconnect live output may have been missed: read every shown
  // terminal again (its backlog is the whole truth the relay still has).
  reconnected() {
    for (const t of this.terms.values()) {
      t.fresh = false;
      if (this.shown(t)) this.read(t);
    }
  }

  shown(t) {
    for (const v of t.views) if (!v.isConnected) t.views.delete(v);
    return t.views.size > 0;
  }

  async read(t) {
    if (t.reading || t.gone || !t.id) return;
    t.reading = true; t.pending = '';
    let r = null, err = null;
    try { r = await this.request('_relay/agent_terminal/read', { terminalId: t.id }); } catch (e) { err = e; }
    t.reading = false;
    const pend = t.pending || '';
    t.pending = null;
    if (err) {
      // offline: read again after the reconnect; otherwise the terminal was
      // released (or never known here): keep what was shown
      if (err.code !== 'offline' && err.code !== 'dropped') t.gone = true;
      if (pend) this.append(t, pend);
      if (t.gone && !t.text) t.note = 'output no longer available';
      this.later(t);
      return;
    }
    const out = typeof (r && r.output) === 'string' ? r.output : '';
    t.text = out; t.cut = !!(r && r.truncated);
    // live output that crossed the read: append what the backlog lacks
    if (pend) this.append(t, pend.slice(overlap(out, pend)));
    else this.bound(t);
    if (r && r.exitStatus) t.exit = r.exitStatus;
    t.fresh = true;
    this.later(t);
  }

  append(t, data) { t.text += data; this.bound(t); }

  bound(t) {
    if (t.text.length <= MAX_TERM_CHARS) return;
    let s = t.text.slice(t.text.length - MAX_TERM_CHARS);
    const nl = s.indexOf('\n');
    if (nl >= 0 && nl < 4096) s = s.slice(nl + 1); // start at a whole line (not mid-escape)
    t.text = s; t.cut = true;
  }

  later(t) {
    this.dirty.add(t);
    if (!this.raf) this.raf = requestAnimationFrame(() => { this.raf = 0; for (const d of this.dirty) this.draw(d); this.dirty.clear(); });
  }

  draw(t) {
    if (!this.shown(t)) return;
    for (const pre of t.views) this.paint(t, pre);
  }

  paint(t, pre) {
    const follow = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    pre.textContent = '';
    if (t.cut) pre.appendChild(el('span', 'mut', '… earlier output dropped\n'));
    if (t.text) ansiNodes(t.text, pre);
    else if (!t.exit) pre.appendChild(el('span', 'mut', t.note || (t.fresh ? 'no output yet' : 'terminal ' + t.id + '…')));
    if (t.exit) {
      const e = t.exit, how = e.signal ? 'signal ' + e.signal : 'exit ' + (e.exitCode != null ? e.exitCode : '?');
      pre.appendChild(el('span', 'mut', (t.text && !t.text.endsWith('\n') ? '\n' : '') + '[' + how + ']'));
    }
    if (follow) pre.scrollTop = pre.scrollHeight;
  }
}

// Length of the longest prefix of `b` that `a` ends with.
function overlap(a, b) {
  if (a.endsWith(b)) return b.length;
  for (let k = Math.min(a.length, b.length - 1, 4096); k > 0; k--) if (a.endsWith(b.slice(0, k))) return k;
  return 0;
}
