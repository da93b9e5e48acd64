// The link to the relay: one WebSocket on /ws, JSON-RPC requests as
// promises, rseq tracking for resume, reconnects with backoff, a silent-link
// check, and telling a refused token (the relay answered 401: stop, show
// pairing) from an outage or a full relay (keep retrying, show a banner).
import { LS } from './dom.js';

// A link that has said nothing for this long is probed; no answer to the
// probe within PROBE_MS more and it is treated as dead (so ~15 s in all).
const IDLE_MS = 10000;
const PROBE_MS = 5000;
// Longest wait between reconnect attempts.
const MAX_BACKOFF_MS = 10000;
// The longest Retry-After the page honours (the relay's auth window is 60 s).
const MAX_RETRY_AFTER_S = 120;
// Most requests waiting for an answer; older ones are failed first.
const MAX_PENDING = 256;

export class Link {
  constructor(h) {
    this.h = h; // {welcome(w, first), message(o, live), state(s), refused(msg)}
    this.clientId = null;
    this.token = '';
    this.ws = null;
    this.timer = 0;
    this.backoff = 500;
    this.stopped = false;
    this.fresh = false;
    this.view = { sid: LS.get('session', null), epoch: null, seq: 0, head: 0 };
    // A fresh page has an empty view: it always starts from a full replay.
    this.n = LS.get('n', 0) | 0;
    this.pending = new Map();
    this.lastRx = Date.now();
    this.probing = 0;
    this.watch = setInterval(() => this.checkSilence(), 2500);
  }
  get open() { return !!(this.ws && this.ws.readyState === 1 && this.ws._welcomed); }
  rid() { this.n++; LS.set('n', this.n); return this.clientId + ':' + this.n; }
  raw(o) {
    if (this.ws && this.ws.readyState === 1) { this.ws.send(JSON.stringify(o)); return true; }
    return false;
  }
  // Resolves with the result, rejects with the JSON-RPC error (or a
  // {code:'offline'} error when there is no link).
  request(method, params, info) {
    const id = this.rid();
    return new Promise((resolve, reject) => {
      if (!this.raw({ jsonrpc: '2.0', id, method, params: params || {} })) {
        reject({ code: 'offline', message: 'Not connected; reconnecting…' });
        return;
      }
      if (this.pending.size >= MAX_PENDING) {
        const [k, v] = this.pending.entries().next().value;
        this.pending.delete(k);
        v.reject({ code: 'dropped', message: 'too many requests waiting' });
      }
      this.pending.set(id, Object.assign({ method, resolve, reject }, info || {}));
    });
  }
  notify(method, params) { return this.raw({ jsonrpc: '2.0', method, params: params || {} }); }
  setSession(sid, epoch) {
    this.view.sid = sid; this.view.epoch = epoch; this.view.seq = 0;
    if (sid) LS.set('session', sid);
  }
  connect() {
    clearTimeout(this.timer); this.timer = 0;
    if (!this.token || this.stopped) return;
    if (this.ws && this.ws.readyState < 2) return;
    const v = this.view;
    const q = new URLSearchParams({ client_id: this.clientId });
    if (v.sid) q.set('session_id', v.sid);
    const sent = !this.fresh && v.sid && v.seq > 0 ? v.seq : 0;
    if (sent) q.set('last_seq', String(sent));
    this.fresh = false;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws?' + q;
    let s;
    try { s = new WebSocket(url, ['acp-relay.v1', 'acp-relay.token.' + this.token]); } catch (e) { this.afterFail(false); return; }
    this.ws = s; s._sent = sent; s._asked = v.sid; s._welcomed = false; s._opened = false;
    this.h.state('connecting');
    s.onopen = () => { if (this.ws !== s) return; s._opened = true; this.lastRx = Date.now(); };
    s.onmessage = ev => {
      if (this.ws !== s || typeof ev.data !== 'string') return;
      this.lastRx = Date.now(); this.probing = 0;
      for (const line of ev.data.split('\n')) {
        if (!line.trim()) continue;
        let o;
        try { o = JSON.parse(line); } catch (e) { continue; }
        try { this.onMsg(o); } catch (e) { console.error(e); }
        if (this.ws !== s) return;
      }
    };
    s.onclose = () => {
      if (this.ws !== s) return;
      this.ws = null;
      for (const p of this.pending.values()) p.reject({ code: 'offline', message: 'The link dropped; try again.' });
      this.pending.clear();
      this.h.state('off');
      this.afterFail(!s._opened);
    };
  }
  drop() { const s = this.ws; this.ws = null; if (s) { try { s.close(); } catch (e) { /* closing */ } } this.h.state('off'); }
  reconnectNow() { this.backoff = 500; this.drop(); this.connect(); }
  async afterFail(beforeOpen) {
    if (this.stopped) return;
    if (beforeOpen) {
      // The browser hides the HTTP status of a refused upgrade: ask an
      // endpoint that needs the token. Only its 401 means "this token is
      // refused"; a full relay (503), a rate limit (429) or no answer is an
      // outage: keep the banner and retry.
      let status = 0, retryAfter = 0;
      try {
        const r = await fetch('/status', { cache: 'no-store', headers: { Authorization: 'Bearer ' + this.token } });
        status = r.status;
        retryAfter = Number(r.headers.get('Retry-After')) || 0;
      } catch (e) { status = 0; }
      if (this.stopped) return;
      if (status === 401) {
        this.stopped = true;
        this.h.refused('The relay refused this pairing token. Paste a current token to connect.');
        return;
      }
      // A rate limit or a full relay says when to come back: never sooner
      // (a tab retrying inside the window would keep its address limited).
      if (retryAfter > 0) this.backoff = Math.max(this.backoff, Math.min(retryAfter, MAX_RETRY_AFTER_S) * 1000);
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
  }
  setToken(t) { this.token = t; this.stopped = false; this.backoff = 500; }
  checkSilence() {
    if (!this.ws || this.ws.readyState !== 1 || !this.ws._welcomed) return;
    const idle = Date.now() - this.lastRx;
    if (this.probing && Date.now() - this.probing > PROBE_MS) {
      // Nothing came back: the link is dead even if the socket looks open.
      this.probing = 0;
      this.reconnectNow();
      return;
    }
    if (!this.probing && idle > IDLE_MS) {
      this.probing = Date.now();
      // Any answer (even "unknown method") proves the link is alive.
      this.request('_relay/ping', {}).catch(() => {});
    }
  }
  onMsg(o) {
    const v = this.view, s = this.ws;
    if (o.type === 'relay_welcome') {
      const first = !s._welcomed;
      s._welcomed = true;
      this.backoff = 500;
      const changed = o.sessionId !== v.sid || (v.epoch != null && o.epoch !== v.epoch);
      if (first && s._sent > 0 && !o.reset && changed) {
        // our last_seq was for another ring: rebuild from a full replay
        this.fresh = true;
        this.h.welcome(o, { rebuild: true, again: true });
        this.drop(); this.connect();
        return;
      }
      const rebuild = o.reset || changed;
      if (rebuild) { v.seq = 0; }
      v.sid = o.sessionId; v.epoch = o.epoch; v.head = o.headSeq | 0;
      if (v.sid) LS.set('session', v.sid);
      this.h.state('open');
      this.h.welcome(o, { rebuild, asked: s._asked, first });
      return;
    }
    const isAsk = o.method && o.id != null;
    let live = true;
    if (typeof o.rseq === 'number') {
      live = o.rseq > v.head;
      if (!isAsk && o.rseq <= v.seq) return;
      if (o.rseq > v.seq) v.seq = o.rseq;
    }
    if (!o.method && o.id != null) {
      const q = this.pending.get(String(o.id));
      if (q) {
        this.pending.delete(String(o.id));
        this.h.message(o, live, q);
        if (o.error) q.reject(o.error); else q.resolve(o.result);
        return;
      }
    }
    this.h.message(o, live, null);
  }
}
