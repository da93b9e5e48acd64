// A small, safe markdown renderer: it builds DOM nodes and sets text through
// text nodes only, so HTML written by an agent is shown as text, never
// interpreted. Links are kept only for http(s) URLs and open with
// rel=noopener. Also: ANSI escape codes to coloured spans (or stripped).
import { el } from './dom.js';

// Longest text rendered as markdown; past it the rest is plain text.
const MAX_MD_CHARS = 200000;

export function renderMarkdown(src) {
  const frag = document.createDocumentFragment();
  let text = String(src || '');
  let tail = '';
  if (text.length > MAX_MD_CHARS) { tail = text.slice(MAX_MD_CHARS); text = text.slice(0, MAX_MD_CHARS); }
  blocks(text.replace(/\r\n?/g, '\n').split('\n'), frag);
  if (tail) frag.appendChild(el('pre', '', tail));
  return frag;
}

const reFence = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
const reHead = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const reHr = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const reUl = /^(\s*)[-*+]\s+(.*)$/;
const reOl = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;
const reQuote = /^ {0,3}>\s?(.*)$/;
const reTableSep = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

function blocks(lines, parent) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    let m;
    if ((m = line.match(reFence))) {
      const fence = m[1], body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      i++;
      const pre = el('pre'), code = el('code', '', body.join('\n'));
      if (m[2]) code.dataset.lang = m[2];
      pre.appendChild(code);
      parent.appendChild(pre);
      continue;
    }
    if ((m = line.match(reHead))) {
      const h = el('h' + m[1].length);
      inline(m[2], h);
      parent.appendChild(h);
      i++;
      continue;
    }
    if (reHr.test(line)) { parent.appendChild(el('hr')); i++; continue; }
    if (reQuote.test(line)) {
      const body = [];
      while (i < lines.length && (m = lines[i].match(reQuote))) { body.push(m[1]); i++; }
      const q = el('blockquote');
      blocks(body, q);
      parent.appendChild(q);
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && reTableSep.test(lines[i + 1]) && lines[i + 1].includes('-')) {
      i = table(lines, i, parent);
      continue;
    }
    if (reUl.test(line) || reOl.test(line)) { i = list(lines, i, parent); continue; }
    const para = [];
    while (i < lines.length && lines[i].trim() && !reFence.test(lines[i]) && !reHead.test(lines[i]) &&
           !reQuote.test(lines[i]) && !reUl.test(lines[i]) && !reOl.test(lines[i]) && !reHr.test(lines[i])) {
      para.push(lines[i++]);
    }
    if (!para.length) { para.push(lines[i++]); }
    const p = el('p');
    para.forEach((l, k) => { if (k) p.appendChild(el('br')); inline(l.trim(), p); });
    parent.appendChild(p);
  }
}

function list(lines, i, parent) {
  const first = lines[i];
  const ordered = !reUl.test(first);
  const indent = (first.match(/^\s*/) || [''])[0].length;
  const L = el(ordered ? 'ol' : 'ul');
  if (ordered) { const n = parseInt(first.match(reOl)[2], 10); if (n !== 1) L.start = n; }
  let li = null, sub = [];
  const flushSub = () => { if (li && sub.length) blocks(sub, li); sub = []; };
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      if (i + 1 < lines.length && (reUl.test(lines[i + 1]) || reOl.test(lines[i + 1]) || /^\s{2,}/.test(lines[i + 1]))) { i++; continue; }
      break;
    }
    const ind = (line.match(/^\s*/) || [''])[0].length;
    const m = ordered ? line.match(reOl) : line.match(reUl);
    if (m && ind <= indent + 1) {
      flushSub();
      li = el('li');
      const body = ordered ? m[3] : m[2];
      const task = body.match(/^\[([ xX])\]\s+(.*)$/);
      if (task) { li.appendChild(document.createTextNode(task[1] === ' ' ? '☐ ' : '☑ ')); inline(task[2], li); }
      else inline(body, li);
      L.appendChild(li);
      i++;
      continue;
    }
    if (ind > indent || (li && !reUl.test(line) && !reOl.test(line))) {
      if (ind <= indent && !sub.length && !(reUl.test(line) || reOl.test(line))) {
        // lazy continuation of the item's text
        li.appendChild(document.createTextNode(' '));
        inline(line.trim(), li);
        i++;
        continue;
      }
      sub.push(line.slice(Math.min(ind, indent + 2)));
      i++;
      continue;
    }
    break;
  }
  flushSub();
  parent.appendChild(L);
  return i;
}

function cells(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const out = [];
  let cur = '';
  for (let k = 0; k < s.length; k++) {
    if (s[k] === '\\' && s[k + 1] === '|') { cur += '|'; k++; continue; }
    if (s[k] === '|') { out.push(cur.trim()); cur = ''; continue; }
    cur += s[k];
  }
  out.push(cur.trim());
  return out;
}

function table(lines, i, parent) {
  const head = cells(lines[i]);
  const aligns = cells(lines[i + 1]).map(c => c.startsWith(':') && c.endsWith(':') ? 'center' : c.endsWith(':') ? 'right' : '');
  const t = el('table'), th = el('thead'), tr = el('tr');
  head.forEach((c, k) => { const h = el('th'); if (aligns[k]) h.align = aligns[k]; inline(c, h); tr.appendChild(h); });
  th.appendChild(tr);
  t.appendChild(th);
  const tb = el('tbody');
  i += 2;
  while (i < lines.length && lines[i].trim() && lines[i].includes('|')) {
    const r = el('tr');
    cells(lines[i]).forEach((c, k) => { const d = el('td'); if (aligns[k]) d.align = aligns[k]; inline(c, d); r.appendChild(d); });
    tb.appendChild(r);
    i++;
  }
  t.appendChild(tb);
  parent.appendChild(t);
  return i;
}

export function safeUrl(u) {
  try {
    const url = new URL(u);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch (e) { return null; }
}

// Inline markup: code spans, links, autolinks, bold, italic, strikethrough.
export function inline(text, parent) {
  let i = 0, buf = '';
  const flush = () => { if (buf) { parent.appendChild(document.createTextNode(buf)); buf = ''; } };
  while (i < text.length) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length && /[\\`*_{}\[\]()#+\-.!|~<>]/.test(text[i + 1])) { buf += text[i + 1]; i += 2; continue; }
    if (c === '`') {
      let n = 1;
      while (text[i + n] === '`') n++;
      const tick = '`'.repeat(n);
      const end = text.indexOf(tick, i + n);
      if (end > 0) { flush(); parent.appendChild(el('code', '', text.slice(i + n, end).replace(/^ (.*) $/, '$1'))); i = end + n; continue; }
    }
    if (c === '[') {
      const close = findClose(text, i);
      if (close > 0 && text[close + 1] === '(') {
        const pe = text.indexOf(')', close + 2);
        if (pe > 0) {
          const label = text.slice(i + 1, close);
          const href = text.slice(close + 2, pe).trim().split(/\s+/)[0].replace(/^<|>$/g, '');
          flush();
          link(label, href, parent);
          i = pe + 1;
          continue;
        }
      }
    }
    if (c === '<') {
      const m = text.slice(i).match(/^<(https?:\/\/[^\s>]+)>/);
      if (m) { flush(); link(m[1], m[1], parent, true); i += m[0].length; continue; }
    }
    if ((c === 'h') && (i === 0 || /[\s(]/.test(text[i - 1]))) {
      const m = text.slice(i).match(/^https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"]/);
      if (m) { flush(); link(m[0], m[0], parent, true); i += m[0].length; continue; }
    }
    if ((c === '*' || c === '_' || c === '~') ) {
      const dbl = text[i + 1] === c;
      const mark = dbl ? c + c : c;
      if (c === '~' && !dbl) { buf += c; i++; continue; }
      const wordy = c === '_' && i > 0 && /\w/.test(text[i - 1]);
      const start = i + mark.length;
      if (!wordy && start < text.length && text[start] !== ' ') {
        const end = findMark(text, mark, start);
        if (end > start) {
          flush();
          const tag = c === '~' ? 's' : dbl ? 'strong' : 'em';
          const e = el(tag);
          inline(text.slice(start, end), e);
          parent.appendChild(e);
          i = end + mark.length;
          continue;
        }
      }
    }
    buf += c;
    i++;
  }
  flush();
}

function findClose(text, i) {
  let depth = 0;
  for (let k = i; k < text.length; k++) {
    if (text[k] === '\\') { k++; continue; }
    if (text[k] === '[') depth++;
    else if (text[k] === ']') { depth--; if (!depth) return k; }
  }
  return -1;
}

function findMark(text, mark, from) {
  let k = from;
  while (k < text.length) {
    const j = text.indexOf(mark, k);
    if (j < 0) return -1;
    if (text[j - 1] !== ' ' && text[j - 1] !== '\\' && (mark.length === 2 || text[j + 1] !== mark[0])) {
      if (mark === '_' && /\w/.test(text[j + 1] || '')) { k = j + 1; continue; }
      return j;
    }
    k = j + mark.length;
  }
  return -1;
}

function link(label, href, parent, plainLabel) {
  const url = safeUrl(href);
  if (!url) {
    // Not http(s): keep the label, drop the target.
    if (plainLabel) parent.appendChild(document.createTextNode(label)); else inline(label, parent);
    return;
  }
  const a = el('a');
  a.href = url;
  a.rel = 'noopener noreferrer';
  a.target = '_blank';
  if (plainLabel) a.textContent = label; else inline(label, a);
  parent.appendChild(a);
}

// ---- ANSI ----

// CSI, OSC (to BEL or ST), other two-byte escapes, and stray C0 controls.
const reEsc = /\x1b\[([0-9;:?<=>]*)([ -\/]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()*+][0-9A-Za-z]|\x1b[@-Z\\-_=>]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;

export function stripAnsi(s) { return cr(String(s || '')).replace(reEsc, ''); }

// Applies carriage returns the way a terminal would show the line's end state.
function cr(s) {
  if (!s.includes('\r')) return s;
  return s.replace(/\r\n/g, '\n').split('\n').map(l => {
    if (!l.includes('\r')) return l;
    let out = '';
    for (const part of l.split('\r')) out = part + out.slice(part.length);
    return out;
  }).join('\n');
}

// Text with SGR colour codes as spans; every other escape is dropped.
export function ansiNodes(s, parent) {
  const text = cr(String(s || ''));
  let st = { fg: null, bg: null, b: false, i: false, u: false, d: false, inv: false };
  let last = 0;
  reEsc.lastIndex = 0;
  let m;
  const emit = chunk => {
    if (!chunk) return;
    const plain = st.fg == null && st.bg == null && !st.b && !st.i && !st.u && !st.d && !st.inv;
    if (plain) { parent.appendChild(document.createTextNode(chunk)); return; }
    const sp = el('span', '', chunk);
    const cls = [];
    let fg = st.fg, bg = st.bg;
    if (st.inv) { const t = fg; fg = bg == null ? 'inv' : bg; bg = t == null ? 'fgc' : t; }
    if (typeof fg === 'number' && fg < 16) cls.push('f' + fg);
    else if (typeof fg === 'string' && fg !== 'inv') sp.style.color = fg;
    if (typeof bg === 'number' && bg < 16) sp.style.backgroundColor = PAL16[bg];
    else if (bg === 'fgc') { sp.style.backgroundColor = 'var(--fg)'; sp.style.color = 'var(--bg)'; }
    else if (typeof bg === 'string') sp.style.backgroundColor = bg;
    if (st.b) cls.push('a-b');
    if (st.i) cls.push('a-i');
    if (st.u) cls.push('a-u');
    if (st.d) cls.push('a-d');
    sp.className = cls.join(' ');
    parent.appendChild(sp);
  };
  while ((m = reEsc.exec(text))) {
    emit(text.slice(last, m.index));
    last = reEsc.lastIndex;
    if (m[3] === 'm' && !m[2]) st = sgr(st, m[1]);
  }
  emit(text.slice(last));
  return parent;
}

const PAL16 = ['#000000', '#b91c1c', '#15803d', '#a16207', '#1d4ed8', '#a21caf', '#0e7490', '#d4d4d8',
  '#52525b', '#ef4444', '#22c55e', '#eab308', '#3b82f6', '#d946ef', '#06b6d4', '#ffffff'];

function c256(n) {
  if (n < 16) return n;
  if (n < 232) { n -= 16; const v = x => [0, 95, 135, 175, 215, 255][x]; return `rgb(${v(Math.floor(n / 36))},${v(Math.floor(n / 6) % 6)},${v(n % 6)})`; }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

function sgr(st, params) {
  st = Object.assign({}, st);
  const p = (params || '0').split(/[;:]/).map(x => parseInt(x || '0', 10));
  for (let k = 0; k < p.length; k++) {
    const n = p[k];
    if (n === 0) st = { fg: null, bg: null, b: false, i: false, u: false, d: false, inv: false };
    else if (n === 1) st.b = true;
    else if (n === 2) st.d = true;
    else if (n === 3) st.i = true;
    else if (n === 4) st.u = true;
    else if (n === 7) st.inv = true;
    else if (n === 22) { st.b = false; st.d = false; }
    else if (n === 23) st.i = false;
    else if (n === 24) st.u = false;
    else if (n === 27) st.inv = false;
    else if (n >= 30 && n <= 37) st.fg = n - 30;
    else if (n >= 90 && n <= 97) st.fg = n - 90 + 8;
    else if (n === 39) st.fg = null;
    else if (n >= 40 && n <= 47) st.bg = n - 40;
    else if (n >= 100 && n <= 107) st.bg = n - 100 + 8;
    else if (n === 49) st.bg = null;
    else if ((n === 38 || n === 48) && p[k + 1] === 5 && k + 2 < p.length) {
      const c = c256(p[k + 2] & 255);
      if (n === 38) st.fg = c; else st.bg = c;
      k += 2;
    } else if ((n === 38 || n === 48) && p[k + 1] === 2 && k + 4 < p.length) {
      const c = `rgb(${p[k + 2] & 255},${p[k + 3] & 255},${p[k + 4] & 255})`;
      if (n === 38) st.fg = c; else st.bg = c;
      k += 4;
    }
  }
  return st;
}
