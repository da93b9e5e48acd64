// The transcript: session/update frames to DOM. Messages as markdown,
// thoughts collapsed, tool calls by ACP content kind (diff, terminal,
// content), plans, permission cards, stop reasons. Follows the stream unless
// the person scrolled up (then a "new activity" pill).
import { el, button, deviceName } from './dom.js';
import { renderMarkdown, ansiNodes, stripAnsi } from './markdown.js';

// Most blocks kept in the transcript; the oldest go first (the relay keeps them).
const MAX_BLOCKS = 4000;
// Longest text shown in one tool card block.
const MAX_TOOL_TEXT = 200000;
// Largest old×new line product diffed exactly; bigger diffs show old then new.
const MAX_DIFF_CELLS = 400000;

export class Transcript {
  constructor(log, pill, hooks) {
    this.log = log; this.pill = pill; this.h = hooks; // {openFile, me, onAsk, onTurnEnd, onUpdate, sendAnswer}
    this.stick = true;
    this.lastTop = 0;
    this.restoreTop = null;
    this.raf = 0;
    this.dirty = new Set();
    this.reset();
    log.addEventListener('scroll', () => this.onScroll(), { passive: true });
    pill.addEventListener('click', () => { this.stick = true; this.toBottom(); });
  }
  reset() {
    this.cur = {};
    this.turn = 0;
    this.tools = new Map();
    this.asks = new Map();
    this.promptIds = new Set();
    this.exitNoticed = false;
  }
  clear() {
    this.log.textContent = '';
    const e = el('p', 'empty', 'No messages yet.');
    e.id = 'empty';
    this.log.appendChild(e);
    this.reset();
    this.pill.hidden = true;
  }
  // Keeps the reader's place when the view is rebuilt (a reset replay).
  rebuildKeepingPlace() {
    // a second rebuild before the first one filled the view keeps its place
    if (this.restoreTop == null) this.restoreTop = this.stick ? null : this.log.scrollTop;
    this.clear();
  }
  onScroll() {
    const l = this.log, top = l.scrollTop;
    const atBottom = l.scrollHeight - top - l.clientHeight < 60;
    if (atBottom) { this.stick = true; this.pill.hidden = true; }
    else if (top < this.lastTop - 2) this.stick = false; // the person scrolled up
    this.lastTop = top;
    if (this.h.onScroll) this.h.onScroll(top, this.stick);
  }
  toBottom() {
    const l = this.log;
    l.scrollTop = l.scrollHeight;
    this.lastTop = l.scrollTop;
    this.pill.hidden = true;
  }
  later() { if (!this.raf) this.raf = requestAnimationFrame(() => this.flush()); }
  flush() {
    this.raf = 0;
    for (const e of this.dirty) this.renderMsg(e);
    this.dirty.clear();
    if (this.restoreTop != null && this.log.scrollHeight >= this.restoreTop + this.log.clientHeight) {
      this.log.scrollTop = this.restoreTop; this.lastTop = this.restoreTop; this.restoreTop = null;
    } else if (this.stick) this.toBottom();
    else if (this.restoreTop == null && this.grew) this.pill.hidden = false;
    this.grew = false;
  }
  add(node) {
    const em = this.log.querySelector('#empty');
    if (em) em.remove();
    this.log.appendChild(node);
    while (this.log.childElementCount > MAX_BLOCKS) {
      const first = this.log.firstElementChild;
      const h = first.offsetHeight;
      first.remove();
      if (!this.stick) this.log.scrollTop -= h;
    }
    this.grew = true;
    this.later();
    return node;
  }
  notice(text, cls) { this.endBlocks(); return this.add(el('div', 'line ' + (cls || ''), text)); }
  endBlocks() { this.cur.asst = this.cur.thought = this.cur.line = null; }
  // escape codes an agent quotes from command output are dropped, never shown raw
  renderMsg(e) { e._body.textContent = ''; e._body.appendChild(renderMarkdown(stripAnsi(e._t))); }

  onUpdate(p, live) {
    const u = p.update || {}, k = u.sessionUpdate;
    if (k === 'user_message_chunk') {
      const r = (p._meta && p._meta.relay) || {}, pid = r.promptId;
      let b = this.cur.user;
      if (!(b && b === this.log.lastElementChild && (pid == null || b._pid === pid))) {
        this.endBlocks(); this.cur.plan = null;
        // cards are keyed per turn: a restarted agent may reuse tool ids
        this.turn++; this.tools = new Map(); this.exitNoticed = false;
        b = this.cur.user = this.add(el('div', 'msg user'));
        b._pid = pid;
        if (r.from && r.from !== this.h.me()) b.appendChild(el('span', 'from', 'from ' + deviceName(r.from)));
        b._text = b.appendChild(document.createTextNode(''));
        if (pid != null) this.promptIds.add(String(pid));
        if (live && this.h.onTurnStart) this.h.onTurnStart();
      }
      const c = u.content || {};
      if (c.type === 'image' && c.data) {
        const img = el('img');
        img.alt = 'attached image';
        img.src = 'data:' + (c.mimeType || 'image/png') + ';base64,' + c.data;
        b.appendChild(img);
      } else if (c.type === 'resource_link') b.appendChild(el('span', 'from', '@' + (c.name || c.uri || '')));
      else b._text.data += textOf(c);
      this.later();
    } else if (k === 'agent_message_chunk') {
      let b = this.cur.asst;
      if (!(b && b === this.log.lastElementChild)) {
        b = this.cur.asst = this.add(el('div', 'msg asst'));
        b.setAttribute('aria-label', 'Agent');
        b._body = b.appendChild(el('div', 'md'));
        b._t = '';
      }
      b._t += textOf(u.content);
      this.dirty.add(b); this.later();
    } else if (k === 'agent_thought_chunk') {
      let b = this.cur.thought;
      if (!(b && b === this.log.lastElementChild)) {
        b = this.cur.thought = this.add(el('details', 'thought'));
        b.appendChild(el('summary', '', 'Thinking…'));
        b._body = b.appendChild(el('div', 'md'));
        b._t = '';
      }
      b._t += textOf(u.content);
      this.dirty.add(b); this.later();
    } else if (k === 'tool_call' || k === 'tool_call_update') {
      this.toolCard(u); this.endBlocks();
    } else if (k === 'plan') {
      let c = this.cur.plan;
      if (!c || !c.isConnected) c = this.cur.plan = this.add(el('div', 'card plan'));
      c.textContent = '';
      c.appendChild(el('div', 'mut', 'Plan'));
      const ol = c.appendChild(el('ol'));
      for (const e of u.entries || []) {
        const li = ol.appendChild(el('li', e.status || '', (e.status === 'completed' ? '✓ ' : e.status === 'in_progress' ? '▸ ' : '') + (e.content || '')));
        if (e.priority) li.title = 'priority ' + e.priority;
      }
      this.endBlocks(); this.later();
    } else if (this.h.onUpdate && this.h.onUpdate(u, live)) {
      // handled by the controls (modes, config, commands, usage)
    } else {
      const rest = Object.assign({}, u);
      delete rest.sessionUpdate;
      let s = JSON.stringify(rest);
      if (s.length > 300) s = s.slice(0, 300) + '…';
      let l = this.cur.line;
      if (!(l && l === this.log.lastElementChild && l._k === k)) { l = this.cur.line = this.add(el('div', 'line json')); l._k = k; }
      l.textContent = k + ' ' + s; l.title = l.textContent;
      this.cur.asst = this.cur.thought = null;
    }
  }

  toolCard(u) {
    const id = u.toolCallId;
    let c = id != null ? this.tools.get(String(id)) : null;
    if (!c) {
      c = this.add(el('div', 'card tool'));
      c.setAttribute('role', 'group');
      c.dataset.turn = String(this.turn);
      if (id != null) c.dataset.tool = String(id);
      const h = c.appendChild(el('div', 'h'));
      c._t = h.appendChild(el('span', 't', 'tool'));
      c._k = h.appendChild(el('span', 'tag'));
      c._s = h.appendChild(el('span', 'tag'));
      c._i = c.appendChild(el('div', 'mono mut cmd'));
      c._loc = c.appendChild(el('div', 'locs'));
      c._c = c.appendChild(el('div', 'body'));
      c._i.hidden = c._loc.hidden = true;
      if (id != null) this.tools.set(String(id), c);
    }
    if (u.title != null) { c._t.textContent = u.title; c.setAttribute('aria-label', 'Tool: ' + u.title); }
    if (u.kind != null) c._k.textContent = u.kind;
    c._k.hidden = !c._k.textContent;
    if (u.status != null) { c._s.textContent = String(u.status).replace('_', ' '); c._s.className = 'tag st-' + u.status; }
    if (u.status === 'completed' || u.status === 'failed') {
      // the relay does not stream an agent terminal's output to devices
      for (const pre of c._c.querySelectorAll('pre.term-out')) if (/running…$/.test(pre.textContent)) pre.textContent = 'terminal ' + pre.dataset.terminal + ' finished';
    }
    c._s.hidden = !c._s.textContent;
    const ri = u.rawInput;
    if (ri && typeof ri === 'object' && (ri.command || ri.cmd)) {
      c._i.textContent = '$ ' + [].concat(ri.command || ri.cmd).join(' ');
      c._i.hidden = false;
    }
    if (Array.isArray(u.locations) && u.locations.length) {
      c._loc.textContent = '';
      for (const l of u.locations) {
        if (!l || !l.path) continue;
        const label = l.path + (l.line ? ':' + l.line : '');
        const b = c._loc.appendChild(button(label, 'link', () => this.h.openFile(l.path, l.line)));
        b.title = 'Open ' + label;
      }
      c._loc.hidden = !c._loc.childElementCount;
    }
    if (u.content != null) { c._c.textContent = ''; for (const b of [].concat(u.content)) this.toolContent(b, c._c); }
    if (u.rawOutput != null && u.content == null) {
      const o = u.rawOutput;
      const t = typeof o === 'string' ? o : o && (o.output || o.stdout || o.formatted_output);
      if (typeof t === 'string' && t) { c._c.textContent = ''; c._c.appendChild(termText(t)); }
    }
    this.later();
  }

  toolContent(b, into) {
    if (!b) return;
    if (b.type === 'diff') { into.appendChild(diffView(b.path, b.oldText, b.newText, this.h.openFile)); return; }
    if (b.type === 'terminal') {
      if (this.h.agentTerminal && b.terminalId) { this.h.agentTerminal(into, b.terminalId); return; }
      const pre = into.appendChild(el('pre', 'term-out'));
      pre.dataset.terminal = b.terminalId || '';
      pre.textContent = 'terminal ' + (b.terminalId || '') + ' running…';
      return;
    }
    const inner = b.type === 'content' ? b.content : b;
    if (!inner) return;
    if (inner.type === 'text') {
      const t = String(inner.text || '').slice(0, MAX_TOOL_TEXT);
      // command output (escape codes, or a shell's look) as text; prose as markdown
      if (/\x1b|\r/.test(t)) into.appendChild(termText(t));
      else { const d = into.appendChild(el('div', 'md')); d.appendChild(renderMarkdown(t)); }
    } else if (inner.type === 'resource_link') {
      into.appendChild(el('div', 'mono', inner.uri || inner.name || ''));
    } else if (inner.type === 'resource') {
      const r = inner.resource || {};
      into.appendChild(el('pre', '', r.text != null ? r.text : r.uri || ''));
    } else if (inner.type === 'image') {
      into.appendChild(el('div', 'mut', '[image]'));
    }
  }

  askCard(o) {
    const id = String(o.id), p = o.params || {};
    if (this.asks.has(id)) { const a = this.asks.get(id); if (!a._done) this.setAskButtons(a, true); return false; }
    const a = this.add(el('div', 'card ask'));
    this.asks.set(id, a);
    a.setAttribute('role', 'group');
    a.dataset.ask = id;
    const tc = p.toolCall || {}, tk = this.tools.get(String(tc.toolCallId));
    const title = tc.title || (tk && tk._t.textContent) || (o.method === 'session/request_permission' ? 'a tool call' : o.method);
    a.setAttribute('aria-label', 'Permission request: ' + title);
    const h = a.appendChild(el('div'));
    h.appendChild(el('span', 'mut', 'Permission · '));
    h.appendChild(el('strong', '', title));
    if (tc.content) { const body = a.appendChild(el('div')); for (const b of [].concat(tc.content)) this.toolContent(b, body); }
    a._b = a.appendChild(el('div', 'b'));
    a._opts = p.options || [];
    for (const op of a._opts) {
      const b = a._b.appendChild(button(op.name || op.optionId, (/^allow/.test(op.kind) ? 'pri' : /^reject/.test(op.kind) ? 'dan' : '') + ' ctl'));
      b.title = op.kind || '';
      b.addEventListener('click', () => {
        if (this.h.sendAnswer(o.id, { outcome: { outcome: 'selected', optionId: op.optionId } })) {
          this.setAskButtons(a, false);
          a._sending = true;
          a._n.textContent = 'Sending ' + (op.name || op.optionId) + '…';
        }
      });
    }
    if (!a._opts.length) a._b.appendChild(el('span', 'mut', 'No options offered; use Stop to cancel the turn.'));
    a._n = a.appendChild(el('div', 'n mut'));
    this.endBlocks();
    return true;
  }
  setAskButtons(a, on) { if (on) a._sending = false; for (const b of a._b.querySelectorAll('button')) b.disabled = !on; }
  // The lease changed: open asks follow it, except one whose answer is on its way.
  leaseAsks(viewer) { for (const a of this.asks.values()) if (!a._done && !a._sending) this.setAskButtons(a, !viewer); }
  firstUser() { const u = this.log.querySelector('.msg.user'); return u && u._text ? u._text.data.trim().split('\n')[0].slice(0, 60) : ''; }
  openAsks() { let n = 0; for (const a of this.asks.values()) if (!a._done) n++; return n; }
  resolveAsk(id, outcome, by) {
    const a = this.asks.get(String(id));
    if (!a || (a._done && !outcome)) return;
    a._done = true;
    a.classList.add('done');
    this.setAskButtons(a, false);
    a._b.hidden = true;
    let what = 'settled';
    if (outcome) {
      if (outcome.outcome === 'selected') { const op = a._opts.find(x => x.optionId === outcome.optionId); what = op ? op.name : outcome.optionId; }
      else what = outcome.outcome || what;
    }
    a._n.textContent = '→ ' + what + (by ? ' · answered by ' + (by === this.h.me() ? 'you' : deviceName(by)) : '');
  }
  settleAll(openIds) { for (const [id] of this.asks) if (!openIds.has(id)) this.resolveAsk(id, null, ''); }
  turnEnd(o) {
    this.endBlocks(); this.cur.plan = null;
    if (o.error) {
      // one notice for a turn that ended because the agent exited
      if (!this.exitNoticed) {
        const l = this.notice('Error: ' + (o.error.message || 'turn failed') + (o.error.code != null ? ' (' + o.error.code + ')' : ''), 'err');
        l.dataset.turn = String(this.turn);
      }
    } else {
      const r = o.result && o.result.stopReason;
      if (r && r !== 'end_turn') this.notice('Stopped: ' + r.replace(/_/g, ' '), 'warn');
      else if (r) { const l = this.notice('✓ Done', ''); l.classList.add('stop'); }
    }
  }
  agentExited(p) {
    const text = '⚠ The agent exited' + (p.status ? ' (' + p.status + ')' : '') + '. Send a prompt to start a fresh one.';
    const last = this.log.lastElementChild;
    if (last && last.classList.contains('err') && last.dataset.turn === String(this.turn)) { last.textContent = text; last.className = 'line warn'; }
    else { const l = this.notice(text, 'warn'); l.dataset.turn = String(this.turn); }
    this.exitNoticed = true;
  }
  terminalOutput(tid, text) {
    for (const pre of this.log.querySelectorAll('pre.term-out')) {
      if (pre.dataset.terminal === tid) { pre.textContent = ''; pre.appendChild(termText(text)); }
    }
  }
}

export function termText(t) { const pre = el('pre', 'ansi'); ansiNodes(t, pre); return pre; }

export function textOf(c) {
  if (!c) return '';
  if (Array.isArray(c)) return c.map(textOf).filter(Boolean).join('\n');
  if (c.type === 'text') return c.text || '';
  if (c.type === 'content') return textOf(c.content);
  if (c.type === 'resource_link') return c.uri || c.name || '';
  if (c.type === 'resource') return (c.resource && (c.resource.text || c.resource.uri)) || '';
  if (c.type === 'image' || c.type === 'audio') return '[' + c.type + ']';
  return '';
}

// ---- diffs ----

// Line diff of old and new text as [op, line] with op ' ', '-', '+'.
export function lineDiff(a, b) {
  const lines = t => (t === '' ? [] : t.replace(/\n$/, '').split('\n'));
  const A = lines(a), B = lines(b);
  let s = 0;
  while (s < A.length && s < B.length && A[s] === B[s]) s++;
  let ea = A.length, eb = B.length;
  while (ea > s && eb > s && A[ea - 1] === B[eb - 1]) { ea--; eb--; }
  const out = [];
  for (let i = 0; i < s; i++) out.push([' ', A[i]]);
  const X = A.slice(s, ea), Y = B.slice(s, eb);
  if (X.length * Y.length > MAX_DIFF_CELLS) {
    X.forEach(l => out.push(['-', l])); Y.forEach(l => out.push(['+', l]));
  } else {
    const n = X.length, m = Y.length;
    const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = X[i] === Y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (X[i] === Y[j]) { out.push([' ', X[i]]); i++; j++; }
      else if (L[i + 1][j] >= L[i][j + 1]) out.push(['-', X[i++]]);
      else out.push(['+', Y[j++]]);
    }
    while (i < n) out.push(['-', X[i++]]);
    while (j < m) out.push(['+', Y[j++]]);
  }
  for (let i = ea; i < A.length; i++) out.push([' ', A[i]]);
  return out;
}

// Unchanged lines kept around each change.
const CONTEXT = 3;

export function diffView(path, oldText, newText, openFile) {
  const box = el('div', 'diff');
  const head = box.appendChild(el('div', 'dp'));
  if (path && openFile) head.appendChild(button(path, 'link', () => openFile(path)));
  else head.textContent = path || '';
  if (oldText == null) head.appendChild(document.createTextNode(' (new file)'));
  const ops = lineDiff(oldText == null ? '' : String(oldText), String(newText == null ? '' : newText));
  const keep = ops.map(() => false);
  ops.forEach(([op], i) => { if (op !== ' ') for (let k = Math.max(0, i - CONTEXT); k <= Math.min(ops.length - 1, i + CONTEXT); k++) keep[k] = true; });
  let skipped = 0;
  ops.forEach(([op, line], i) => {
    if (!keep[i]) { skipped++; return; }
    if (skipped) { box.appendChild(el('div', 'dl hunk', '⋯ ' + skipped + ' unchanged lines')); skipped = 0; }
    box.appendChild(el('div', 'dl ' + (op === '+' ? 'add' : op === '-' ? 'del' : ''), op + ' ' + line));
  });
  if (skipped) box.appendChild(el('div', 'dl hunk', '⋯ ' + skipped + ' unchanged lines'));
  return box;
}

// A unified diff (git's) as coloured lines.
export function unifiedView(text) {
  const box = el('div', 'diff');
  for (const line of String(text || '').split('\n')) {
    const c = line.startsWith('+++') || line.startsWith('---') || line.startsWith('diff ') || line.startsWith('index ') ? 'meta'
      : line.startsWith('@@') ? 'hunk' : line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : '';
    box.appendChild(el('div', 'dl ' + c, line));
  }
  return box;
}
