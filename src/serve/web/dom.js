// Small DOM and storage helpers shared by every module. Text only ever goes
// in through textContent / text nodes: nothing from the agent is parsed as HTML.
export const $ = id => document.getElementById(id);
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}
export function button(text, cls, onclick, label) {
  const b = el('button', cls || '', text);
  b.type = 'button';
  if (onclick) b.addEventListener('click', onclick);
  if (label) b.setAttribute('aria-label', label);
  return b;
}
const P = 'acpr.';
export const LS = {
  get(k, d) { try { const v = localStorage.getItem(P + k); return v == null ? d : JSON.parse(v); } catch (e) { return d; } },
  set(k, v) { try { localStorage.setItem(P + k, JSON.stringify(v)); } catch (e) { /* private mode */ } },
  del(k) { try { localStorage.removeItem(P + k); } catch (e) { /* private mode */ } },
};
export function hex(n) {
  const a = new Uint8Array(n);
  crypto.getRandomValues(a);
  return Array.from(a, b => b.toString(16).padStart(2, '0')).join('');
}
let toastTimer = 0;
export function toast(msg, ms) {
  const t = $('toast');
  t.textContent = msg;
  t.classList.add('on');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('on'), ms || 4000);
}
export function short(s) { return s && s.length > 22 ? s.slice(0, 10) + '…' + s.slice(-8) : s || ''; }
// A device id is "<name>-<8 hex>": the name part is what people read.
export function deviceName(id) { return String(id || '').replace(/-[0-9a-f]{8}$/, '') || String(id || ''); }
export function when(t) {
  if (!t) return '';
  const d = new Date(typeof t === 'number' ? t : String(t));
  if (isNaN(d)) return '';
  const s = (Date.now() - d.getTime()) / 1000;
  if (s < 60) return 'just now';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return d.toLocaleDateString();
}
// Dialogs (the sessions menu, the sheets): opening one moves the focus into
// it, closing it gives the focus back to what had it; Escape closes the one
// opened last. `close` is the owner's close (it calls closeDialog).
const dialogs = []; // {d, close, back}
export function openDialog(d, close, first) {
  const was = dialogs.findIndex(x => x.d === d);
  const back = was >= 0 ? dialogs.splice(was, 1)[0].back : document.activeElement;
  dialogs.push({ d, close, back });
  d.hidden = false;
  const f = first || d.querySelector('button:not([disabled]), input, select, textarea');
  if (f) f.focus();
}
export function closeDialog(d) {
  d.hidden = true;
  const i = dialogs.findIndex(x => x.d === d);
  if (i < 0) return;
  const { back } = dialogs.splice(i, 1)[0];
  const a = document.activeElement;
  // only when the focus was in the dialog (a click elsewhere moved it on)
  if (back && back.isConnected && back.focus && (!a || a === document.body || d.contains(a))) back.focus();
}
document.addEventListener('keydown', e => {
  if (e.key !== 'Escape' || e.defaultPrevented) return;
  for (let i = dialogs.length - 1; i >= 0; i--) {
    const x = dialogs[i];
    if (x.d.hidden) { dialogs.splice(i, 1); continue; }
    e.preventDefault();
    x.close();
    return;
  }
});
