// The agent's own controls: modes, config options and models, usage, the
// slash-command palette, attachments (images, workspace files via @), and
// the agent's login methods and log.
import { $, el, button, toast, openDialog, closeDialog } from './dom.js';
import { stripAnsi, safeUrl } from './markdown.js';

// Most commands shown in the palette at once.
const MAX_PALETTE = 50;
// Largest image attached (bytes, before base64).
const MAX_IMAGE_BYTES = 5 << 20;
// Most attachments on one prompt.
const MAX_ATTACHMENTS = 8;
// Lines of the agent log kept on the page.
const MAX_LOG_LINES = 500;
// Workspace files listed for @ (one tree walk).
const MAX_AT_FILES = 2000;

export class Controls {
  constructor(app) {
    this.app = app; // {request, sid(), isController(), input, promptCaps()}
    this.modes = null;
    this.config = [];
    this.models = null;
    this.commands = [];
    this.usage = null;
    this.attachments = [];
    this.pal = { open: false, items: [], sel: 0, kind: '/' };
    this.atFiles = null;
    this.bar = $('ctl');
    this.setupPalette();
    this.setupAttach();
    this.setupAgentSheet();
  }
  reset() { this.modes = null; this.config = []; this.models = null; this.commands = []; this.usage = null; this.render(); }
  // The answer to session/new, load or resume.
  fromSession(r) {
    if (!r) return;
    if (r.modes) this.modes = r.modes;
    if (Array.isArray(r.configOptions)) this.config = r.configOptions;
    if (r.models) this.models = r.models;
    this.render();
  }
  // session/update kinds the controls own; true when handled.
  onUpdate(u) {
    switch (u.sessionUpdate) {
      case 'current_mode_update':
        if (this.modes) this.modes.currentModeId = u.currentModeId; else this.modes = { currentModeId: u.currentModeId, availableModes: [] };
        this.render(); return true;
      case 'config_option_update': case 'config_options_update':
        if (Array.isArray(u.configOptions)) this.config = u.configOptions;
        this.render(); return true;
      case 'available_commands_update':
        this.commands = Array.isArray(u.availableCommands) ? u.availableCommands : [];
        return true;
      case 'usage_update':
        this.usage = u; this.render(); return true;
      case 'current_model_update':
        if (this.models) { this.models.currentModelId = u.currentModelId || u.modelId; this.render(); }
        return true;
      case 'session_info_update':
        if (u.title && this.app.onTitle) this.app.onTitle(u.title);
        return true;
    }
    return false;
  }
  render() {
    // Selects are updated in place (a redraw under a person's finger would
    // drop their pick); they are rebuilt only when their options change.
    const bar = this.bar, ctl = this.app.isController();
    const want = [];
    const m = this.modes;
    if (m && Array.isArray(m.availableModes) && m.availableModes.length) {
      want.push(['modeSel', 'Mode', m.availableModes.map(x => [x.id, x.name || x.id, x.description]), m.currentModeId, v => this.setMode(v)]);
    }
    for (const o of this.config) {
      if (!o || !Array.isArray(o.options)) continue;
      const opts = [];
      for (const x of o.options) {
        if (x && Array.isArray(x.options)) for (const y of x.options) opts.push([y.value, (x.name ? x.name + ': ' : '') + (y.name || y.value), y.description]);
        else if (x) opts.push([x.value, x.name || x.value, x.description]);
      }
      want.push(['cfg-' + o.id, o.name || o.id, opts, o.currentValue, v => this.setConfig(o.id, v)]);
    }
    if (this.models && Array.isArray(this.models.availableModels) && !this.config.some(o => o.category === 'model')) {
      want.push(['modelSel', 'Model', this.models.availableModels.map(x => [x.modelId, x.name || x.modelId, x.description]), this.models.currentModelId, v => this.setModel(v)]);
    }
    const keep = new Set(want.map(w => w[0]));
    for (const l of [...bar.querySelectorAll('label[data-for]')]) if (!keep.has(l.dataset.for)) l.remove();
    for (const [id, label, options, current, onchange] of want) {
      const sig = JSON.stringify([label, options]);
      let l = bar.querySelector('label[data-for="' + CSS.escape(id) + '"]');
      if (!l || l.dataset.sig !== sig) {
        const fresh = this.select(label, id, options, onchange);
        fresh.dataset.sig = sig;
        if (l) l.replaceWith(fresh); else bar.insertBefore(fresh, bar.querySelector('#usage'));
        l = fresh;
      }
      const s = l.querySelector('select');
      const v = current == null ? '' : String(current);
      if (s.value !== v && document.activeElement !== s) s.value = v;
      s.disabled = !ctl;
    }
    let u = bar.querySelector('#usage');
    if (this.usage) {
      if (!u) { u = bar.appendChild(el('span', 'mut')); u.id = 'usage'; }
      u.textContent = usageText(this.usage);
    } else if (u) u.remove();
  }
  select(label, id, options, onchange) {
    const l = el('label');
    l.dataset.for = id;
    l.appendChild(el('span', 'mut', label));
    const s = l.appendChild(el('select', 'ctl'));
    s.id = id;
    for (const [v, name, desc] of options) { const o = s.appendChild(el('option', '', name)); o.value = v; if (desc) o.title = desc; }
    s.addEventListener('change', () => onchange(s.value));
    return l;
  }
  async setMode(v) {
    try { await this.app.request('session/set_mode', { sessionId: this.app.sid(), modeId: v }); if (this.modes) this.modes.currentModeId = v; toast('Mode: ' + v, 2000); }
    catch (e) { toast(e.message || 'could not change the mode', 6000); this.render(); }
  }
  async setConfig(id, v) {
    try {
      const r = await this.app.request('session/set_config_option', { sessionId: this.app.sid(), configId: id, value: v });
      if (r && Array.isArray(r.configOptions)) this.config = r.configOptions;
      else { const o = this.config.find(x => x.id === id); if (o) o.currentValue = v; }
      this.render();
    } catch (e) { toast(e.message || 'could not change the option', 6000); this.render(); }
  }
  async setModel(v) {
    try { await this.app.request('session/set_model', { sessionId: this.app.sid(), modelId: v }); this.models.currentModelId = v; }
    catch (e) { toast(e.message || 'could not change the model', 6000); this.render(); }
  }

  // ---- palette: "/" commands, "@" files ----
  setupPalette() {
    const input = $('input'), ul = $('palette');
    input.addEventListener('input', () => this.updatePalette());
    input.addEventListener('keydown', e => {
      if (!this.pal.open) return;
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const n = this.pal.items.length;
        this.pal.sel = (this.pal.sel + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
        this.drawPalette();
      } else if ((e.key === 'Enter' || e.key === 'Tab') && this.pal.items.length) {
        e.preventDefault(); e.stopImmediatePropagation();
        this.pick(this.pal.items[this.pal.sel]);
      } else if (e.key === 'Escape') { e.preventDefault(); this.closePalette(); }
    });
    ul.addEventListener('mousedown', e => e.preventDefault());
  }
  updatePalette() {
    const input = $('input'), v = input.value, pos = input.selectionStart || v.length;
    const before = v.slice(0, pos);
    let m;
    if ((m = before.match(/^\/([\w:.-]*)$/))) {
      const q = m[1].toLowerCase();
      this.pal.kind = '/';
      this.pal.items = this.commands.filter(c => c && c.name && c.name.toLowerCase().startsWith(q)).slice(0, MAX_PALETTE)
        .map(c => ({ label: '/' + c.name, desc: c.description || '', hint: c.input && c.input.hint, value: c.name }));
      if (!this.commands.length) this.pal.items = [{ label: 'No commands from this agent yet', desc: '', none: true }];
    } else if ((m = before.match(/(?:^|\s)@([^\s@]*)$/)) && this.app.promptCaps().embeddedContext !== false) {
      const q = m[1].toLowerCase();
      this.pal.kind = '@';
      this.pal.at = m[1];
      this.loadAtFiles();
      this.pal.items = (this.atFiles || []).filter(f => f.toLowerCase().includes(q)).slice(0, MAX_PALETTE).map(f => ({ label: '@' + f, desc: '', value: f }));
      if (!this.pal.items.length) this.pal.items = [{ label: this.atFiles ? 'No matching file' : 'Listing files…', desc: '', none: true }];
    } else { this.closePalette(); return; }
    this.pal.open = true; this.pal.sel = 0;
    this.drawPalette();
  }
  drawPalette() {
    const ul = $('palette');
    ul.textContent = '';
    this.pal.items.forEach((it, i) => {
      const li = ul.appendChild(el('li'));
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', String(i === this.pal.sel));
      li.appendChild(el('div', 'mono', it.label + (it.hint ? ' ' + it.hint : '')));
      if (it.desc) li.appendChild(el('div', 'd', it.desc));
      if (!it.none) li.addEventListener('click', () => this.pick(it));
    });
    ul.hidden = false;
    const s = ul.children[this.pal.sel];
    if (s && s.scrollIntoView) s.scrollIntoView({ block: 'nearest' });
  }
  closePalette() { this.pal.open = false; $('palette').hidden = true; }
  pick(it) {
    if (!it || it.none) return;
    const input = $('input');
    if (this.pal.kind === '/') input.value = '/' + it.value + ' ';
    else {
      const pos = input.selectionStart || input.value.length;
      const before = input.value.slice(0, pos).replace(/@[^\s@]*$/, ''), after = input.value.slice(pos);
      input.value = before + after;
      this.addAttachment({ kind: 'file', name: it.value, uri: 'file://' + this.app.root().replace(/\/$/, '') + '/' + it.value });
    }
    this.closePalette();
    input.focus();
  }
  async loadAtFiles() {
    if (this.atFiles || this.atLoading) return;
    this.atLoading = true;
    try {
      const r = await this.app.request('_relay/fs/tree', { path: '.', depth: 4 });
      const out = [];
      const walk = es => { for (const e of es || []) { if (out.length >= MAX_AT_FILES) return; if (e.kind === 'dir' || e.kind === 'directory') walk(e.children); else out.push(e.path); } };
      walk(r.entries);
      this.atFiles = out;
      if (this.pal.open && this.pal.kind === '@') this.updatePalette();
    } catch (e) { this.atFiles = []; }
    this.atLoading = false;
  }

  // ---- attachments ----
  setupAttach() {
    $('attachBtn').addEventListener('click', () => $('fileIn').click());
    $('fileIn').addEventListener('change', () => {
      const f = $('fileIn').files[0];
      $('fileIn').value = '';
      if (!f) return;
      if (f.size > MAX_IMAGE_BYTES) { toast('That image is larger than ' + (MAX_IMAGE_BYTES >> 20) + ' MB.'); return; }
      const r = new FileReader();
      r.onload = () => {
        const m = String(r.result).match(/^data:([^;]+);base64,(.*)$/);
        if (m) this.addAttachment({ kind: 'image', name: f.name || 'photo', mimeType: m[1], data: m[2] });
      };
      r.readAsDataURL(f);
    });
  }
  caps() {
    const c = this.app.promptCaps();
    $('attachBtn').hidden = !c.image;
  }
  addAttachment(a) {
    if (this.attachments.length >= MAX_ATTACHMENTS) { toast('At most ' + MAX_ATTACHMENTS + ' attachments.'); return; }
    this.attachments.push(a);
    this.drawAttachments();
  }
  drawAttachments() {
    const box = $('attachments');
    box.textContent = '';
    this.attachments.forEach((a, i) => {
      const c = box.appendChild(el('div', 'chip'));
      c.appendChild(el('span', '', (a.kind === 'image' ? '🖼 ' : '@') + a.name));
      c.appendChild(button('×', '', () => { this.attachments.splice(i, 1); this.drawAttachments(); }, 'Remove ' + a.name));
    });
  }
  // Prompt blocks for the attachments; clears them.
  takeBlocks() {
    const out = this.attachments.map(a => a.kind === 'image'
      ? { type: 'image', mimeType: a.mimeType, data: a.data }
      : { type: 'resource_link', uri: a.uri, name: a.name });
    this.attachments = [];
    this.drawAttachments();
    return out;
  }

  // ---- agent login and log ----
  setupAgentSheet() {
    $('agentClose').addEventListener('click', () => closeDialog($('agentSheet')));
  }
  // `relayAgent`: the relay's name of the agent to log in (several agents), else null.
  async openAgent(authMethods, agentName, relayAgent) {
    const sheet = $('agentSheet');
    openDialog(sheet, () => closeDialog(sheet), $('agentClose'));
    $('agentName').textContent = agentName || 'Agent';
    const list = $('authList');
    list.textContent = '';
    if (authMethods && authMethods.length) {
      list.appendChild(el('p', 'mut', 'Log the agent in:'));
      for (const m of authMethods) {
        const b = list.appendChild(button(m.name || m.id, 'ctl', async () => {
          b.disabled = true;
          const p = { methodId: m.id };
          if (relayAgent) p._meta = { relay: { agent: relayAgent } };
          try { await this.app.request('authenticate', p); toast('Logged in with ' + (m.name || m.id)); }
          catch (e) { toast(e.message || 'login failed', 6000); }
          b.disabled = !this.app.isController();
        }));
        b.disabled = !this.app.isController();
        if (m.description) list.appendChild(el('div', 'mut', m.description));
      }
    } else list.appendChild(el('p', 'mut', 'This agent offers no login methods.'));
    const pre = $('agentLog');
    pre.textContent = 'loading…';
    try {
      // the log of this session's agent (this socket's session when none is named)
      const sid = this.app.sid();
      let r;
      try { r = await this.app.request('_relay/agent/log', sid ? { sessionId: sid } : {}); }
      catch (e) { if (sid && e.code === -32602) r = await this.app.request('_relay/agent/log', {}); else throw e; }
      pre.textContent = '';
      for (const l of (r && r.lines) || []) this.logLine(l);
      if (!pre.childElementCount) pre.textContent = 'The agent has printed nothing.';
    } catch (e) { pre.textContent = 'The relay has no agent log here (' + (e.message || e.code) + ').'; }
  }
  logLine(l) {
    const pre = $('agentLog');
    if (!pre.childElementCount) pre.textContent = '';
    const line = pre.appendChild(el('div', l.stream === 'stderr' ? 'stderr' : ''));
    // escape codes dropped; a login URL becomes a link (http(s) only)
    const text = stripAnsi(l.text);
    let at = 0;
    for (const m of text.matchAll(/https?:\/\/[^\s<>"'`]+[^\s<>"'`.,;:!?)\]]/g)) {
      const href = safeUrl(m[0]);
      if (!href) continue;
      line.appendChild(document.createTextNode(text.slice(at, m.index)));
      const a = line.appendChild(el('a', '', m[0]));
      a.href = href; a.rel = 'noopener noreferrer'; a.target = '_blank';
      at = m.index + m[0].length;
    }
    line.appendChild(document.createTextNode(text.slice(at)));
    if (l.t) line.title = new Date(l.t).toLocaleTimeString();
    while (pre.childElementCount > MAX_LOG_LINES) pre.firstElementChild.remove();
    pre.scrollTop = pre.scrollHeight;
  }
}

function num(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + 'M' : n >= 1e3 ? (n / 1e3).toFixed(1) + 'k' : String(n); }

export function usageText(u) {
  const parts = [];
  if (typeof u.used === 'number') parts.push(num(u.used) + (typeof u.size === 'number' ? ' / ' + num(u.size) : '') + ' tokens');
  else {
    const t = u.totalTokens != null ? u.totalTokens : (u.inputTokens || 0) + (u.outputTokens || 0);
    if (t) parts.push(num(t) + ' tokens');
  }
  const c = u.cost;
  if (c && typeof c.amount === 'number') parts.push((c.currency === 'USD' || !c.currency ? '$' : c.currency + ' ') + c.amount.toFixed(2));
  return parts.join(' · ');
}
