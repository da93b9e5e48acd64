// Terminal screens for the page: draws each relay terminal's grid from
// `_relay/terminal/screen` snapshots and row diffs (rows of spans, so the text
// at a row and column can be read from the DOM), sends keys, follows the
// viewport's size, and switches between several terminals.
//
// export function mountTerminals(container, api)
//   api.request(method, params) -> Promise<result>
//   api.on(method, fn(params))  -> (optional) unsubscribe function
//   api.isController()          -> whether this device may type

const HISTORY_MAX = 1000; // lines kept above the screen, per terminal
const MIN_COLS = 10, MIN_ROWS = 4, MAX_COLS = 500, MAX_ROWS = 200;
const RESIZE_DEBOUNCE_MS = 150;
const FONT_KEY = 'acp-relay.term.font';
const FONT_MIN = 9, FONT_MAX = 24, FONT_DEFAULT = 14;
// Ctrl+] (telnet's escape key) moves the focus out of the terminal to its
// tab; every other key, Tab included, goes to the shell.
const LEAVE_HINT = 'Ctrl+] leaves the terminal';
const isLeaveKey = (e) => e.ctrlKey && !e.altKey && !e.metaKey && !e.shiftKey && (e.key === ']' || e.code === 'BracketRight');

// xterm's 256 colours: 16 themed by CSS (--t0..--t15), a 6x6x6 cube, a grey ramp.
const PALETTE = (() => {
  const p = [];
  for (let i = 0; i < 16; i++) p.push('var(--t' + i + ')');
  const v = [0, 95, 135, 175, 215, 255];
  for (let r = 0; r < 6; r++) for (let g = 0; g < 6; g++) for (let b = 0; b < 6; b++) p.push(rgb(v[r], v[g], v[b]));
  for (let i = 0; i < 24; i++) { const c = 8 + i * 10; p.push(rgb(c, c, c)); }
  return p;
})();
function rgb(r, g, b) { return '#' + [r, g, b].map((x) => x.toString(16).padStart(2, '0')).join(''); }
function colour(c) {
  if (typeof c === 'number') return PALETTE[c] || null;
  if (typeof c === 'string' && /^#[0-9a-f]{6}$/i.test(c)) return c;
  return null;
}

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function button(label, title, onClick, cls) {
  const b = h('button', cls || 'term-btn', label);
  b.type = 'button';
  if (title) { b.title = title; b.setAttribute('aria-label', title); }
  // Keep the focus (and the phone's keyboard) on the terminal.
  b.addEventListener('mousedown', (e) => e.preventDefault());
  b.addEventListener('click', onClick);
  return b;
}

// ---- keys -> bytes ----

const CSI = '\x1b[';
function keyBytes(e, appCursor) {
  const mod = (e.shiftKey ? 1 : 0) + (e.altKey ? 2 : 0) + (e.ctrlKey ? 4 : 0);
  const arrow = { ArrowUp: 'A', ArrowDown: 'B', ArrowRight: 'C', ArrowLeft: 'D', Home: 'H', End: 'F' }[e.key];
  if (arrow) {
    if (mod) return CSI + '1;' + (mod + 1) + arrow;
    return (appCursor ? '\x1bO' : CSI) + arrow;
  }
  const tilde = { Insert: 2, Delete: 3, PageUp: 5, PageDown: 6, F5: 15, F6: 17, F7: 18, F8: 19, F9: 20, F10: 21, F11: 23, F12: 24 }[e.key];
  if (tilde) return CSI + tilde + (mod ? ';' + (mod + 1) : '') + '~';
  const ss3 = { F1: 'P', F2: 'Q', F3: 'R', F4: 'S' }[e.key];
  if (ss3) return '\x1bO' + ss3;
  switch (e.key) {
    case 'Enter': return e.altKey ? '\x1b\r' : '\r';
    case 'Backspace': return e.ctrlKey ? '\x08' : (e.altKey ? '\x1b\x7f' : '\x7f');
    case 'Tab': return e.shiftKey ? CSI + 'Z' : '\t';
    case 'Escape': return '\x1b';
  }
  if (e.key.length === 1 || [...e.key].length === 1) {
    let s = e.key;
    if (e.ctrlKey) s = ctrlOf(s);
    if (s == null) return null;
    return e.altKey ? '\x1b' + s : s;
  }
  return null;
}

// Ctrl with a key: letters and @[\]^_ to C0 controls, space to NUL, ? to DEL.
function ctrlOf(ch) {
  if (ch === ' ' || ch === '@' || ch === '2') return '\x00';
  if (ch === '?') return '\x7f';
  const c = ch.toUpperCase().charCodeAt(0);
  if (c >= 64 && c <= 95) return String.fromCharCode(c - 64);
  if (ch === '3') return '\x1b';
  if (ch === '4') return '\x1c';
  if (ch === '5') return '\x1d';
  if (ch === '6') return '\x1e';
  if (ch === '7' || ch === '/') return '\x1f';
  if (ch === '8') return '\x7f';
  return null;
}

// ---- one terminal: its model and its DOM ----

class Term {
  constructor(id) {
    this.id = id;
    this.seq = -1;
    this.cols = 80; this.rows = 0;
    this.lines = [];
    this.cursor = { row: 0, col: 0, visible: true };
    this.alt = false; this.appCursor = false; this.bracketedPaste = false;
    this.title = null; this.command = null; this.mine = false;
    this.exited = null;
    this.el = h('div', 'term-screen');
    this.el.tabIndex = -1;
    this.el.dataset.terminalId = id;
    this.historyEl = this.el.appendChild(h('div', 'term-history'));
    this.gridEl = this.el.appendChild(h('div', 'term-grid'));
    this.gridEl.setAttribute('role', 'log');
    this.gridEl.setAttribute('aria-label', 'terminal ' + id);
    this.rowEls = [];
    this.follow = true;
    this.el.addEventListener('scroll', () => {
      this.follow = this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - 4;
    });
  }

  label() {
    const t = this.title || this.command || 'shell';
    const n = this.id.replace(/^t/, '');
    return n + ': ' + (t.length > 24 ? t.slice(0, 23) + '…' : t) + (this.exited ? ' (exited)' : '');
  }

  // A snapshot or a diff. Returns false when a diff does not follow the frame held.
  apply(p) {
    if (!p.full && p.seq !== this.seq + 1) return false;
    const oldCursorRow = this.cursor.row;
    const resized = p.cols !== this.cols || p.rows !== this.rows;
    this.seq = p.seq;
    this.cols = p.cols;
    if (p.full) {
      this.historyEl.textContent = '';
      this.lines = new Array(p.rows).fill(null).map(() => []);
    }
    if (resized || p.full) this.setRows(p.rows);
    const dirty = new Set();
    for (const [r, spans] of p.lines || []) {
      if (r >= 0 && r < this.rows) { this.lines[r] = spans; dirty.add(r); }
    }
    this.alt = !!p.altScreen;
    this.appCursor = !!p.appCursor;
    this.bracketedPaste = !!p.bracketedPaste;
    this.title = p.title || null;
    this.cursor = p.cursor || this.cursor;
    dirty.add(oldCursorRow); dirty.add(this.cursor.row);
    if (Array.isArray(p.history) && p.history.length) this.addHistory(p.history);
    this.el.classList.toggle('alt', this.alt);
    this.gridEl.style.width = this.cols + 'ch';
    for (const r of dirty) this.renderRow(r);
    if (this.follow) this.el.scrollTop = this.el.scrollHeight;
    return true;
  }

  setRows(n) {
    while (this.lines.length < n) this.lines.push([]);
    this.lines.length = n;
    while (this.rowEls.length < n) {
      const d = h('div', 'term-row');
      d.dataset.row = String(this.rowEls.length);
      this.rowEls.push(this.gridEl.appendChild(d));
    }
    while (this.rowEls.length > n) this.rowEls.pop().remove();
    this.rows = n;
    for (let r = 0; r < n; r++) this.renderRow(r);
  }

  addHistory(lines) {
    const frag = document.createDocumentFragment();
    for (const spans of lines) {
      const d = h('div', 'term-row');
      drawSpans(d, spans, -1);
      frag.appendChild(d);
    }
    this.historyEl.appendChild(frag);
    let extra = this.historyEl.childElementCount - HISTORY_MAX;
    while (extra-- > 0) this.historyEl.firstElementChild.remove();
  }

  renderRow(r) {
    const d = this.rowEls[r];
    if (!d) return;
    const cur = this.cursor.visible && this.cursor.row === r ? this.cursor.col : -1;
    drawSpans(d, this.lines[r] || [], cur);
  }
}

// Draws a row: gaps as spaces, each span as a <span data-col> styled by its
// attributes, the cursor as a block over its cell.
function drawSpans(d, spans, cursorCol) {
  d.textContent = '';
  let at = 0;
  const put = (text, s, col) => {
    if (!text) return;
    if (!s) { d.appendChild(document.createTextNode(text)); return; }
    const e = h('span', null, text);
    e.dataset.col = String(col);
    style(e, s);
    d.appendChild(e);
  };
  const cursorCell = (ch, s, col) => {
    const e = h('span', 'term-cursor', ch);
    e.dataset.col = String(col);
    if (s) style(e, s);
    d.appendChild(e);
  };
  for (const s of spans) {
    if (typeof s.col !== 'number' || typeof s.text !== 'string') continue;
    if (s.col > at) {
      const gap = s.col - at;
      if (cursorCol >= at && cursorCol < s.col) {
        put(' '.repeat(cursorCol - at), null);
        cursorCell(' ', null, cursorCol);
        put(' '.repeat(s.col - cursorCol - 1), null);
      } else put(' '.repeat(gap), null);
      at = s.col;
    }
    const w = s.wide ? 2 : 1;
    const chars = Array.from(s.text);
    const end = at + chars.length * w;
    if (cursorCol >= at && cursorCol < end) {
      const k = Math.floor((cursorCol - at) / w);
      put(chars.slice(0, k).join(''), s, at);
      cursorCell(chars[k], s, at + k * w);
      put(chars.slice(k + 1).join(''), s, at + (k + 1) * w);
    } else put(s.text, s, at);
    at = end;
  }
  if (cursorCol >= at) {
    put(' '.repeat(cursorCol - at), null);
    cursorCell(' ', null, cursorCol);
  }
}

function style(e, s) {
  let fg = colour(s.fg), bg = colour(s.bg);
  if (s.inverse) {
    const f = fg || 'var(--t-fg)';
    fg = bg || 'var(--t-bg)';
    bg = f;
  }
  if (fg) e.style.color = fg;
  if (bg) e.style.backgroundColor = bg;
  // Prefixed: the page's own stylesheet has short class names too.
  const cls = [];
  if (s.bold) cls.push('t-b');
  if (s.dim) cls.push('t-d');
  if (s.italic) cls.push('t-i');
  if (s.underline) cls.push('t-u');
  if (s.inverse) cls.push('t-r');
  if (s.wide) {
    cls.push('t-w');
    // Each wide character takes two cells whatever the font's glyph width.
    e.style.width = (Array.from(s.text).length * 2) + 'ch';
  }
  if (cls.length) e.className = (e.className ? e.className + ' ' : '') + cls.join(' ');
}

// ---- the terminal panel ----

export function mountTerminals(container, api) {
  const terms = new Map(); // terminalId -> Term
  let active = null;
  let ctrlLatch = false, altLatch = false;
  let fitTimer = 0;

  const root = container.appendChild(h('div', 'term-root'));
  const bar = root.appendChild(h('div', 'term-bar'));
  const tabs = bar.appendChild(h('div', 'term-tabs'));
  tabs.setAttribute('role', 'tablist');
  tabs.setAttribute('aria-label', 'terminals');
  const tools = bar.appendChild(h('div', 'term-tools'));
  const newBtn = tools.appendChild(button('+', 'New terminal', () => openTerm()));
  tools.appendChild(button('A−', 'Smaller text', () => setFont(font - 1)));
  tools.appendChild(button('A+', 'Larger text', () => setFont(font + 1)));
  tools.appendChild(button('↻', 'Refresh the list of terminals', () => refresh()));
  // Tab goes to the shell, so the terminal says how to leave it (a desktop's
  // keyboard; a touch screen's focus moves with a tap).
  const hint = bar.insertBefore(h('span', 'term-hint', LEAVE_HINT), tools);
  hint.hidden = true;
  Object.assign(hint.style, { flex: '0 1 auto', minWidth: '0', overflow: 'hidden', textOverflow: 'ellipsis', whiteSpace: 'nowrap', fontSize: '13px', color: 'var(--mut,#555e6b)' });
  const note = root.appendChild(h('div', 'term-note'));
  note.hidden = true;
  const stage = root.appendChild(h('div', 'term-stage'));
  const empty = stage.appendChild(h('div', 'term-empty'));
  empty.appendChild(h('p', null, 'No terminal open.'));
  empty.appendChild(button('Open a terminal', 'Open a terminal', () => openTerm(), 'term-btn term-open'));
  const measure = stage.appendChild(h('span', 'term-measure', 'W'.repeat(20)));
  measure.setAttribute('aria-hidden', 'true');

  // The phone's keyboard and IME go through this textarea.
  const input = root.appendChild(h('textarea', 'term-input'));
  input.setAttribute('aria-label', 'terminal input');
  input.setAttribute('aria-description', LEAVE_HINT);
  const fine = typeof matchMedia === 'function' && matchMedia('(pointer: fine)').matches;
  input.addEventListener('focus', () => { hint.hidden = !fine; });
  input.addEventListener('blur', () => { hint.hidden = true; });
  input.autocapitalize = 'off';
  input.setAttribute('autocomplete', 'off');
  input.setAttribute('autocorrect', 'off');
  input.spellcheck = false;

  const keybar = root.appendChild(h('div', 'term-keys'));
  keybar.setAttribute('aria-label', 'terminal keys');
  const latchBtns = {};
  const keyDefs = [
    ['Esc', 'Escape', '\x1b'], ['Tab', 'Tab', '\t'],
    ['Ctrl', 'Control (next key)', 'ctrl'], ['Alt', 'Alt (next key)', 'alt'],
    ['←', 'Left', 'ArrowLeft'], ['↑', 'Up', 'ArrowUp'], ['↓', 'Down', 'ArrowDown'], ['→', 'Right', 'ArrowRight'],
    ['|', 'Pipe', '|'], ['~', 'Tilde', '~'], ['/', 'Slash', '/'], ['-', 'Dash', '-'],
    ['Paste', 'Paste', 'paste'],
  ];
  for (const [label, title, what] of keyDefs) {
    const b = keybar.appendChild(button(label, title, () => keyButton(what), 'term-key'));
    if (what === 'ctrl' || what === 'alt') { latchBtns[what] = b; b.setAttribute('aria-pressed', 'false'); }
  }

  let font = FONT_DEFAULT;
  try { font = Number(localStorage.getItem(FONT_KEY)) || FONT_DEFAULT; } catch (e) { /* private mode */ }
  function setFont(px, quiet) {
    font = Math.max(FONT_MIN, Math.min(FONT_MAX, px));
    if (!quiet) { try { localStorage.setItem(FONT_KEY, String(font)); } catch (e) { /* private mode */ } }
    root.style.setProperty('--term-font', font + 'px');
    fit();
  }
  setFont(font, true);

  function controller() { try { return api.isController(); } catch (e) { return true; } }

  function showNote() {
    const ctl = controller();
    newBtn.disabled = !ctl;
    note.hidden = ctl;
    note.textContent = ctl ? '' : 'Viewing: another device has control. Take control to type.';
    if (active && active.exited) {
      note.hidden = false;
      note.textContent = 'This terminal has ended' + (active.exited.text ? ' (' + active.exited.text + ')' : '') + '. Close its tab or open a new one.';
    }
  }

  function renderTabs() {
    tabs.textContent = '';
    for (const t of terms.values()) {
      const tab = tabs.appendChild(h('div', 'term-tab' + (t === active ? ' on' : '') + (t.exited ? ' ended' : '')));
      const sel = tab.appendChild(button(t.label(), 'Show terminal ' + t.label(), () => activate(t), 'term-tab-name'));
      sel.setAttribute('role', 'tab');
      sel.setAttribute('aria-selected', t === active ? 'true' : 'false');
      sel.dataset.terminalId = t.id;
      tab.appendChild(button('×', 'Close terminal ' + t.label(), () => closeTerm(t), 'term-tab-close'));
    }
    empty.hidden = terms.size > 0;
    showNote();
  }

  function activate(t) {
    if (active === t) { focus(); return; }
    active = t;
    for (const x of terms.values()) x.el.hidden = x !== t;
    renderTabs();
    if (t) { t.el.scrollTop = t.el.scrollHeight; fit(true); focus(); }
  }

  function focus() {
    if (!active || !controller()) return;
    try { input.focus({ preventScroll: true }); } catch (e) { /* old browsers */ }
  }

  // Out of the terminal: to its tab, where Tab and Shift+Tab go on through the page.
  function leave() {
    const to = tabs.querySelector('.term-tab.on .term-tab-name') || newBtn;
    try { to.focus({ preventScroll: true }); } catch (e) { input.blur(); }
  }

  function ensure(id) {
    let t = terms.get(id);
    if (!t) {
      t = new Term(id);
      t.el.hidden = true;
      stage.appendChild(t.el);
      t.el.addEventListener('click', () => { if (!getSelection().toString()) focus(); });
      terms.set(id, t);
      if (!active) activate(t); else renderTabs();
    }
    return t;
  }

  function frame(p) {
    if (!p || typeof p.terminalId !== 'string') return;
    const t = ensure(p.terminalId);
    if (!t.apply(p)) attach(t.id);
    else if (p.full || p.title !== undefined) renderTabs();
  }

  async function attach(id) {
    try {
      const r = await api.request('_relay/terminal/attach', { terminalId: id });
      if (r && r.screen) frame(r.screen);
    } catch (e) { /* it may be gone: its exit says so */ }
  }

  async function refresh() {
    let r;
    try { r = await api.request('_relay/terminal/list', {}); } catch (e) { return; }
    const list = (r && r.terminals) || [];
    const live = new Set(list.map((x) => x.terminalId));
    for (const x of list) {
      const t = ensure(x.terminalId);
      t.command = x.command || null;
      t.mine = !!x.mine;
      if (t.seq < 0 || !x.attached) await attach(x.terminalId);
    }
    // Terminals that ended while this page was away.
    for (const t of terms.values()) if (!live.has(t.id) && !t.exited) t.exited = { text: 'gone' };
    renderTabs();
  }

  async function openTerm() {
    if (!controller()) { showNote(); return; }
    const { cols, rows } = size();
    try {
      const r = await api.request('_relay/terminal/open', { cols, rows });
      const t = ensure(r.terminalId);
      t.mine = true;
      if (r.screen) t.apply(r.screen);
      activate(t);
    } catch (e) {
      note.hidden = false;
      note.textContent = 'Could not open a terminal: ' + ((e && e.message) || e);
    }
  }

  async function closeTerm(t) {
    if (t.exited) { forget(t); return; }
    // Closed or already gone, its tab goes (a later exit notice finds no
    // tab); with no link it stays, to be closed again.
    try { await api.request('_relay/terminal/close', { terminalId: t.id }); } catch (e) {
      if (e && (e.code === 'offline' || e.code === 'dropped')) {
        note.hidden = false;
        note.textContent = 'Could not close terminal ' + t.label() + ': ' + (e.message || e.code);
        return;
      }
    }
    forget(t);
  }

  function forget(t) {
    t.el.remove();
    terms.delete(t.id);
    if (active === t) { active = null; const next = [...terms.values()].pop(); if (next) activate(next); }
    renderTabs();
  }

  function exit(p) {
    const t = p && terms.get(p.terminalId);
    if (!t) return;
    const text = p.reason ? p.reason : p.signal ? 'signal ' + p.signal : 'exit code ' + p.exitCode;
    t.exited = { text };
    t.cursor = { ...t.cursor, visible: false };
    t.renderRow(t.cursor.row);
    renderTabs();
  }

  // ---- input ----

  function send(data) {
    if (!active || active.exited || !data) return;
    if (!controller()) { showNote(); return; }
    // The device that types gets the screen at its size.
    fitNow(active);
    api.request('_relay/terminal/input', { terminalId: active.id, data }).catch(() => {});
  }

  function latched(s) {
    if (ctrlLatch) { const c = s.length === 1 ? ctrlOf(s) : null; if (c != null) s = c; }
    if (altLatch) s = '\x1b' + s;
    if (ctrlLatch || altLatch) setLatch(null);
    return s;
  }

  function setLatch(which) {
    ctrlLatch = which === 'ctrl' ? !ctrlLatch : false;
    altLatch = which === 'alt' ? !altLatch : false;
    latchBtns.ctrl.setAttribute('aria-pressed', String(ctrlLatch));
    latchBtns.alt.setAttribute('aria-pressed', String(altLatch));
    latchBtns.ctrl.classList.toggle('on', ctrlLatch);
    latchBtns.alt.classList.toggle('on', altLatch);
  }

  async function keyButton(what) {
    if (what === 'ctrl' || what === 'alt') { setLatch(what); focus(); return; }
    if (what === 'paste') {
      let text = null;
      try { text = await navigator.clipboard.readText(); } catch (e) { text = window.prompt('Paste into the terminal:'); }
      if (text) paste(text);
      focus();
      return;
    }
    if (what.startsWith('Arrow')) {
      const s = keyBytes({ key: what, shiftKey: false, altKey: altLatch, ctrlKey: ctrlLatch }, active && active.appCursor);
      setLatch(null);
      send(s);
    } else send(latched(what));
    focus();
  }

  function paste(text) {
    text = text.replace(/\r?\n/g, '\r');
    if (active && active.bracketedPaste) text = '\x1b[200~' + text.replace(/\x1b\[20[01]~/g, '') + '\x1b[201~';
    send(text);
  }

  input.addEventListener('keydown', (e) => {
    if (e.isComposing || e.keyCode === 229) return;
    if (isLeaveKey(e)) { e.preventDefault(); leave(); return; }
    // Copy a selection; paste goes through the paste event.
    if ((e.ctrlKey || e.metaKey) && e.shiftKey && (e.key === 'C' || e.key === 'V' || e.key === 'c' || e.key === 'v')) return;
    if (e.metaKey) return;
    if (e.ctrlKey && e.key === 'c' && getSelection().toString()) return;
    if (e.ctrlKey && e.key === 'v') return;
    const ev = { key: e.key, shiftKey: e.shiftKey, altKey: e.altKey || altLatch, ctrlKey: e.ctrlKey || ctrlLatch };
    const s = keyBytes(ev, active && active.appCursor);
    if (s == null) return;
    e.preventDefault();
    if (ctrlLatch || altLatch) setLatch(null);
    send(s);
  });
  // Soft keyboards report Backspace and Enter on an empty field this way.
  input.addEventListener('beforeinput', (e) => {
    if (e.inputType === 'deleteContentBackward') { e.preventDefault(); send(latched('\x7f')); }
    else if (e.inputType === 'insertLineBreak' || e.inputType === 'insertParagraph') { e.preventDefault(); send(latched('\r')); }
  });
  input.addEventListener('input', () => {
    const v = input.value;
    input.value = '';
    if (v) send(latched(v.replace(/\n/g, '\r')));
  });
  input.addEventListener('paste', (e) => {
    const text = e.clipboardData && e.clipboardData.getData('text/plain');
    e.preventDefault();
    if (text) paste(text);
  });

  // ---- size ----

  function cell() {
    const r = measure.getBoundingClientRect();
    return { w: r.width / 20 || 8, h: r.height || 16 };
  }

  function size() {
    const c = cell();
    const s = stage.getBoundingClientRect();
    const cols = Math.max(MIN_COLS, Math.min(MAX_COLS, Math.floor((s.width - 8) / c.w)));
    const rows = Math.max(MIN_ROWS, Math.min(MAX_ROWS, Math.floor((s.height - 4) / c.h)));
    return { cols, rows };
  }

  function fit(now) {
    clearTimeout(fitTimer);
    fitTimer = setTimeout(() => fitNow(active), now ? 0 : RESIZE_DEBOUNCE_MS);
  }

  // Resizes `t` to this viewport when it differs (the relay answers with a
  // full frame; until then the size asked for is remembered, not resent).
  function fitNow(t) {
    if (!t || t.exited || !controller() || stage.clientWidth === 0) return;
    const { cols, rows } = size();
    if (cols === t.cols && rows === t.rows) return;
    if (t.asked && t.asked.cols === cols && t.asked.rows === rows && t.asked.seq === t.seq) return;
    t.asked = { cols, rows, seq: t.seq };
    api.request('_relay/terminal/resize', { terminalId: t.id, cols, rows }).catch(() => {});
  }
  if (typeof ResizeObserver === 'function') new ResizeObserver(() => fit()).observe(stage);
  window.addEventListener('orientationchange', () => fit());
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });

  const offs = [
    api.on('_relay/terminal/screen', frame),
    api.on('_relay/terminal/exit', exit),
    api.on('_relay/control', () => { showNote(); fit(); }),
  ];
  renderTabs();
  refresh();

  // For tests and the page: the text of row `row` from column `col`.
  root.termText = (row, col, len) => {
    const t = active;
    if (!t) return '';
    const d = t.rowEls[row];
    return d ? d.textContent.slice(col, len == null ? undefined : col + len) : '';
  };
  return {
    refresh,
    open: openTerm,
    unmount() { for (const off of offs) if (typeof off === 'function') off(); root.remove(); },
  };
}

// ---- agent terminals: a command's output with its colours ----

const AGENT_TEXT_MAX = 256 * 1024; // characters kept per agent terminal view

// Renders command output with SGR colours as spans; other escapes are
// dropped, a bare \r starts the line again, backspace removes a character.
export function renderAnsi(text) {
  const frag = document.createDocumentFragment();
  let s = {};
  let line = [];
  const lines = [];
  let buf = '';
  const flush = () => { if (buf) { line.push([buf, { ...s }]); buf = ''; } };
  const endLine = () => { flush(); lines.push(line); line = []; };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\x1b') {
      const next = text[i + 1];
      if (next === '[') {
        let j = i + 2;
        while (j < text.length && !(text.charCodeAt(j) >= 0x40 && text.charCodeAt(j) <= 0x7e)) j++;
        if (text[j] === 'm') { flush(); s = sgr(s, text.slice(i + 2, j)); }
        i = j;
      } else if (next === ']') {
        let j = i + 2;
        while (j < text.length && text[j] !== '\x07' && !(text[j] === '\x1b' && text[j + 1] === '\\')) j++;
        i = text[j] === '\x1b' ? j + 1 : j;
      } else i += 1;
    } else if (ch === '\n') endLine();
    else if (ch === '\r') { if (text[i + 1] !== '\n') { buf = ''; line = []; } }
    else if (ch === '\b') { if (buf) buf = buf.slice(0, -1); }
    else if (ch >= ' ' || ch === '\t') buf += ch;
  }
  flush();
  if (line.length) lines.push(line);
  lines.forEach((l, n) => {
    for (const [t, st] of l) {
      if (!Object.keys(st).length) { frag.appendChild(document.createTextNode(t)); continue; }
      const e = h('span', null, t);
      style(e, st);
      frag.appendChild(e);
    }
    if (n < lines.length - 1 || text.endsWith('\n')) frag.appendChild(document.createTextNode('\n'));
  });
  return frag;
}

function sgr(s, params) {
  const p = params === '' ? [0] : params.split(/[;:]/).map((x) => Number(x) || 0);
  s = { ...s };
  for (let k = 0; k < p.length; k++) {
    const n = p[k];
    if (n === 0) s = {};
    else if (n === 1) s.bold = true;
    else if (n === 2) s.dim = true;
    else if (n === 3) s.italic = true;
    else if (n === 4) s.underline = true;
    else if (n === 7) s.inverse = true;
    else if (n === 22) { delete s.bold; delete s.dim; }
    else if (n === 23) delete s.italic;
    else if (n === 24) delete s.underline;
    else if (n === 27) delete s.inverse;
    else if (n >= 30 && n <= 37) s.fg = n - 30;
    else if (n >= 90 && n <= 97) s.fg = n - 90 + 8;
    else if (n === 39) delete s.fg;
    else if (n >= 40 && n <= 47) s.bg = n - 40;
    else if (n >= 100 && n <= 107) s.bg = n - 100 + 8;
    else if (n === 49) delete s.bg;
    else if (n === 38 || n === 48) {
      const key = n === 38 ? 'fg' : 'bg';
      if (p[k + 1] === 5 && k + 2 < p.length) { s[key] = p[k + 2] & 255; k += 2; }
      else if (p[k + 1] === 2 && k + 4 < p.length) { s[key] = rgb(p[k + 2] & 255, p[k + 3] & 255, p[k + 4] & 255); k += 4; }
    }
  }
  return s;
}

// A live view of an agent's terminal (a tool call's `{type: "terminal",
// terminalId}` content): what it printed so far, then its output as it comes.
// Returns {el, stop()}.
export function mountAgentTerminal(el, api, { terminalId }) {
  const pre = el.appendChild(h('pre', 'term-agent'));
  pre.setAttribute('aria-label', 'command output');
  let text = '';
  let pending = [];
  let ready = false;
  let queued = false;
  const draw = () => {
    queued = false;
    const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = '';
    pre.appendChild(renderAnsi(text));
    if (follow) pre.scrollTop = pre.scrollHeight;
  };
  const schedule = () => { if (!queued) { queued = true; requestAnimationFrame(draw); } };
  const add = (data) => {
    text += data;
    if (text.length > AGENT_TEXT_MAX) text = '…' + text.slice(text.length - AGENT_TEXT_MAX);
    schedule();
  };
  let shown = false;
  let off = null;
  const stop = () => { if (typeof off === 'function') off(); off = null; };
  // The backlog (read) and the live chunks come by separate paths: each
  // carries its stream offset (`end`), so a chunk the backlog already holds
  // (end <= the backlog's end) is dropped, whichever arrives first.
  let upto = -1;
  off = api.on('_relay/agent_terminal/output', (p) => {
    // A card that re-rendered its content drops this view: stop with it.
    if (pre.isConnected) shown = true; else if (shown) { stop(); return; }
    if (!p || p.terminalId !== terminalId || typeof p.data !== 'string') return;
    if (!ready) { pending.push(p); return; }
    if (typeof p.end === 'number' && p.end <= upto) return;
    add(p.data);
  });
  api.request('_relay/agent_terminal/read', { terminalId }).then((r) => {
    let out = (r && r.output) || '';
    if (r && r.truncated) out = '…' + out;
    const end = r && r._meta && r._meta.relay && r._meta.relay.end;
    if (typeof end === 'number') upto = end;
    const live = pending.filter((p) => !(typeof p.end === 'number' && p.end <= upto)).map((p) => p.data).join('');
    text = '';
    add(out + live);
  }, () => { add(pending.map((p) => p.data).join('')); }).finally(() => { ready = true; pending = []; });
  return { el: pre, stop };
}
