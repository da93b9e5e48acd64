// The web client's entry point: pairing, the link, the screens (chat,
// files, changes, terminal) and the lease. Each concern lives in its module.
import { $, el, LS, hex, toast, deviceName, openDialog, closeDialog } from './dom.js';
import { Link } from './link.js';
import { Transcript } from './transcript.js';
import { Controls } from './controls.js';
import { Files, Changes } from './workspace.js';
import { Sessions } from './sessions.js';
import { Attention } from './notify.js';

// ---- identity ----
function slug(s) { return String(s || '').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 24); }
let clientId = LS.get('client');
if (!clientId || !/-[0-9a-f]{8}$/.test(clientId)) {
  const guess = /Android|iPhone|iPad/.test(navigator.userAgent) ? 'phone' : 'web';
  clientId = guess + '-' + hex(4);
  LS.set('client', clientId);
}
// `?client_id=` names this tab's device for once (tests, several tabs), unsaved.
{
  const q = new URLSearchParams(location.search).get('client_id');
  if (q && /^[\w.:-]{1,64}$/.test(q)) clientId = q;
}
let token = LS.get('token', '');
// The hash carries a pairing token (`#token=`, kept, then wiped from the
// address bar) and a session to open (`#session=ID`, the notifier's links).
function readHash() {
  const h = new URLSearchParams(location.hash.slice(1)), t = (h.get('token') || '').trim(), s = (h.get('session') || '').trim();
  if (t) { token = t; LS.set('token', token); }
  if (t || s) history.replaceState(null, '', location.pathname + location.search);
  return { token: t, session: s && s.length <= 256 ? s : '' };
}
const firstHash = readHash();

// ---- state ----
const S = {
  busy: false, leaseOn: false, holder: null, info: null, agentName: '', relayVersion: '',
  promptCaps: {}, authMethods: [], ever: false, title: '', wantLoad: null, meta: {}, shownProject: null, retake: null,
};
const listeners = new Map(); // notification method -> Set(fn)
const viewer = () => S.leaseOn && S.holder != null && S.holder !== clientId;

const link = new Link({
  welcome: onWelcome,
  message: onMessage,
  state: setConn,
  refused: msg => showPair(msg),
});
link.clientId = clientId;

function request(method, params) { return link.request(method, params); }
const api = {
  request, sid: () => link.view.sid, isController: () => !viewer(), promptCaps: () => S.promptCaps,
  // the session's working directory (session/list tells it), for file:// links
  root: () => { const s = sessions.list.find(x => x.sessionId === link.view.sid); return (s && s.cwd) || (S.meta.workspace && S.meta.workspace.root) || ''; },
  openFile: (p, line) => openFile(p, line),
};

const att = new Attention();
// Agent terminals in tool cards: term.js draws each (mountAgentTerminal: the
// backlog from _relay/agent_terminal/read, then live _relay/agent_terminal/output).
// After a reconnect every view still shown is mounted again, so output
// printed while the link was down comes with the fresh backlog.
function onNote(method, fn) { if (!listeners.has(method)) listeners.set(method, new Set()); listeners.get(method).add(fn); return () => listeners.get(method).delete(fn); }
// Agent terminal views tracked for remounting; the oldest is let go first.
const MAX_AGENT_VIEWS = 64;
const agentViews = new Set(); // {terminalId, mark, handle}
// A view that grows with live output keeps a following transcript at the bottom.
const agentGrow = typeof ResizeObserver === 'function' ? new ResizeObserver(() => { if (tr.stick) tr.later(); }) : null;
function agentMounted(v, handle) { v.handle = handle; if (agentGrow && handle && handle.el) agentGrow.observe(handle.el); }
function agentStop(handle) { handle.stop(); if (agentGrow) agentGrow.unobserve(handle.el); }
function agentTerminal(into, terminalId) {
  for (const v of agentViews) if ((v.handle && !v.handle.el.isConnected) || (!v.handle && !v.mark.isConnected)) { if (v.handle) agentStop(v.handle); agentViews.delete(v); }
  while (agentViews.size >= MAX_AGENT_VIEWS) { const v = agentViews.values().next().value; if (v.handle) agentStop(v.handle); agentViews.delete(v); }
  // The view's place in the card, taken now: the module loads later, and by
  // then the card's content may have been replaced (the tool finished).
  const v = { terminalId, handle: null, mark: into.appendChild(document.createComment('agent terminal ' + terminalId)) };
  agentViews.add(v);
  mountAgent(v, v.mark);
}
// Mounts the view in place of `mark`; a mark no longer in its card (the card
// re-rendered meanwhile) means the view is not wanted any more.
function mountAgent(v, mark, old) {
  if (!document.querySelector('link[href="/term.css"]')) { const css = document.createElement('link'); css.rel = 'stylesheet'; css.href = '/term.css'; document.head.appendChild(css); }
  import('./term.js').then((m) => {
    if (!mark.isConnected) { agentViews.delete(v); return; }
    // A backlog read the relay refuses (the agent released the terminal)
    // marks the view, which then says so instead of "no output yet".
    let pre = null;
    const api = {
      on: onNote,
      request: (method, params) => request(method, params).catch((e) => {
        if (method === '_relay/agent_terminal/read' && pre && typeof e.code === 'number') pre.classList.add('released');
        throw e;
      }),
    };
    const box = document.createDocumentFragment();
    const handle = m.mountAgentTerminal(box, api, { terminalId: v.terminalId });
    pre = handle.el;
    agentMounted(v, handle);
    mark.replaceWith(box);
  }).catch((e) => { console.warn(e); if (old && mark.isConnected) mark.replaceWith(old); });
}
function remountAgentTerminals() {
  for (const v of agentViews) {
    if (!v.handle) continue; // still loading: it reads the backlog when it mounts
    const old = v.handle;
    agentStop(old);
    if (!old.el.isConnected) { agentViews.delete(v); continue; }
    v.handle = null;
    // the new view takes the old one's place in the card
    v.mark = document.createComment('agent terminal ' + v.terminalId);
    old.el.replaceWith(v.mark);
    mountAgent(v, v.mark, old.el);
  }
}
const tr = new Transcript($('log'), $('pill'), {
  me: () => clientId,
  agentTerminal,
  openFile: (p, line) => openFile(p, line),
  sendAnswer: (id, result) => {
    if (viewer()) { leaseHint(); return false; }
    if (link.raw({ jsonrpc: '2.0', id, result })) return true;
    toast('Not connected; reconnecting…');
    return false;
  },
  onUpdate: (u, live) => controls.onUpdate(u, live),
  onTurnStart: () => setBusy(true),
  onScroll: (top, stick) => saveScroll(top, stick),
});
const controls = new Controls(Object.assign({}, api, { onTitle: t => { S.title = t; setHeader(); } }));
const files = new Files($('files'), api);
const changes = new Changes($('changes'), api);
const sessions = new Sessions(Object.assign({}, api, {
  load: sid => loadSession(sid),
  connected: () => link.open,
  // this session's cards are live; the others' counts come with the list
  needs: (sid, meta) => (sid === link.view.sid ? tr.openAsks() > 0 : !!meta && (meta.pendingAsks | 0) > 0),
  deviceName: () => deviceName(clientId),
  onList: () => setHeader(),
  onDeleted: () => newSession(),
  places: () => ({ projects: S.meta.projects || [], agents: S.meta.agents || [] }),
}));

// ---- screens ----
const tabs = ['chat', 'files', 'changes', 'term'];
let screen = 'chat';
function showScreen(name) {
  screen = name;
  for (const t of tabs) {
    $(t).hidden = t !== name;
    $('tab-' + t).setAttribute('aria-selected', String(t === name));
    $('tab-' + t).tabIndex = t === name ? 0 : -1;
  }
  if (name === 'files') files.show();
  if (name === 'changes') changes.show(); else changes.hide();
  if (name === 'term') mountTerm();
  if (name === 'chat' && tr.stick) tr.toBottom();
}
for (const t of tabs) $('tab-' + t).addEventListener('click', () => showScreen(t));
$('tabs').addEventListener('keydown', e => {
  if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
  const i = tabs.indexOf(screen), n = tabs[(i + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
  showScreen(n); $('tab-' + n).focus();
});
function openFile(p, line) {
  showScreen('files');
  files.openFile(p, line);
}

let termState = 'none';
async function mountTerm() {
  if (termState !== 'none') return;
  termState = 'loading';
  const box = $('term');
  box.textContent = '';
  if (S.meta.terminal === false) {
    box.appendChild(el('p', 'empty', 'Terminals are off on this relay.'));
    termState = 'off';
    return;
  }
  try {
    const m = await import('./term.js');
    const css = document.createElement('link');
    css.rel = 'stylesheet'; css.href = '/term.css';
    document.head.appendChild(css);
    const host = box.appendChild(el('div', 'term-host'));
    m.mountTerminals(host, {
      request,
      on: (method, fn) => { if (!listeners.has(method)) listeners.set(method, new Set()); listeners.get(method).add(fn); return () => listeners.get(method).delete(fn); },
      isController: () => !viewer(),
    });
    termState = 'mounted';
  } catch (e) {
    console.error(e);
    box.appendChild(el('p', 'empty', 'Terminal unavailable: this relay build has no terminal screen.'));
    termState = 'failed';
  }
}

// ---- header, banner, lease ----
function setConn(s) {
  const d = $('dot');
  d.className = 'dot ' + s;
  const l = { open: 'connected', connecting: 'connecting', off: 'offline' }[s];
  d.setAttribute('aria-label', l); d.title = l;
  if (s === 'open') { S.ever = true; $('banner').hidden = true; }
  else if ($('pair').hidden && link.token) {
    $('banner').hidden = false;
    $('banner').textContent = S.ever ? 'Reconnecting to the relay… your view is kept.' : 'Connecting to the relay…';
  }
  setHeader();
}
// The current session's project and agent (session/list tells them).
function place() {
  const s = sessions.list.find(x => x.sessionId === link.view.sid);
  const m = (s && s._meta && s._meta.relay) || {};
  return { project: m.project || '', agent: m.agent || '' };
}
const several = k => Array.isArray(S.meta[k]) && S.meta[k].length > 1;
function setHeader() {
  const sid = link.view.sid;
  const title = sessions.title(sid) || S.title || tr.firstUser() || 'New session';
  $('title').textContent = title;
  att.setTitle(title + ' · acp-relay');
  const d = $('dot').title;
  const p = place();
  // With several projects or agents the header names both; else the agent's own name.
  const where = (several('projects') || several('agents')) && (p.project || p.agent)
    ? [p.project, p.agent].filter(Boolean).join(' · ')
    : (S.agentName || 'agent');
  $('sub').textContent = (d !== 'connected' ? d + ' · ' : '') + where + (S.busy ? ' · working' : '');
  // Files and Changes follow the session's project.
  if (p.project && p.project !== S.shownProject) {
    const first = S.shownProject == null;
    S.shownProject = p.project;
    if (!first) { files.projectChanged(screen === 'files'); changes.changed(); }
  }
}
function setBusy(b) {
  S.busy = b;
  $('stop').hidden = !b;
  $('send').hidden = b;
  setHeader();
}
function setLease(l, h) {
  S.leaseOn = !!l;
  S.holder = h == null ? null : h;
  const bar = $('leasebar');
  bar.hidden = !S.leaseOn;
  if (S.leaseOn) {
    $('leaseTxt').textContent = S.holder === clientId ? 'You have control.' : S.holder ? deviceName(S.holder) + ' has control: this device only watches.' : 'No device has control yet.';
    $('takeBtn').hidden = S.holder === clientId;
  }
  const v = viewer();
  document.body.classList.toggle('viewer', v);
  for (const e of document.querySelectorAll('.ctl')) if (!e.closest('.ask')) e.disabled = v;
  tr.leaseAsks(v);
  $('input').placeholder = v ? 'Viewing only' : 'Message the agent';
  controls.render();
  files.buttons();
  sessions.render();
}
function leaseHint() {
  const m = (S.holder && S.holder !== clientId ? deviceName(S.holder) : 'Another device') + ' has control. Tap “Take control” to drive from here.';
  toast(m, 6000);
  $('leasebar').hidden = false; $('takeBtn').hidden = false;
  return m;
}
$('takeBtn').addEventListener('click', async () => {
  try { const r = await request('_relay/take_control', {}); setLease(r.lease != null ? r.lease : S.leaseOn, r.holder); toast('You have control.'); }
  catch (e) { toast(e.message || 'could not take control'); }
});

// ---- incoming ----
function onWelcome(w, how) {
  $('pair').hidden = true;
  if (how.rebuild) {
    const sameSession = w.sessionId === tr.sid;
    if (sameSession) tr.rebuildKeepingPlace(); else { tr.clear(); tr.restoreTop = savedScroll(w.sessionId); controls.reset(); }
    tr.sid = w.sessionId;
  } else if (tr.sid == null) { tr.sid = w.sessionId; tr.restoreTop = savedScroll(w.sessionId); }
  if (how.again) return; // reconnecting for a full replay
  remountAgentTerminals();
  if (how.first && how.asked && w.sessionId !== how.asked) S.wantLoad = how.asked;
  setBusy(!!w.busy);
  setLease(w.lease, w.holder);
  if (S.retake) {
    const was = S.retake;
    S.retake = null;
    if (w.lease && (w.holder === was || w.holder == null)) {
      request('_relay/take_control', {}).then(r => setLease(r.lease != null ? r.lease : S.leaseOn, r.holder)).catch(() => {});
    }
  }
  tr.settleAll(new Set((w.pendingPermissionIds || []).map(String)));
  // a later welcome on the same socket is a view switch (load, resume)
  if (how.first) afterWelcome();
}
async function afterWelcome() {
  let r;
  try { r = await request('initialize', { protocolVersion: 1, clientCapabilities: {}, clientInfo: { name: 'acp-relay-web', version: '1' } }); }
  catch (e) { return; }
  const ai = r.agentInfo || {};
  S.meta = (r._meta && r._meta.relay) || {};
  S.agentName = (ai.title || ai.name || 'agent') + (ai.version ? ' ' + ai.version : '');
  S.relayVersion = S.meta.version || '';
  S.promptCaps = (r.agentCapabilities && r.agentCapabilities.promptCapabilities) || {};
  S.authMethods = r.authMethods || [];
  controls.caps();
  if (S.meta.lease != null && S.meta.lease !== S.leaseOn) setLease(S.meta.lease, S.holder);
  setHeader();
  sessions.refresh();
  // quiet for a remembered session; a link's session that cannot open says so
  if (S.wantLoad) { const s = S.wantLoad; S.wantLoad = null; loadSession(s, s !== firstHash.session); return; }
  // The session's modes and options: resume answers them without a replay
  // (only as controller: a viewer must not claim a free lease by looking).
  if (link.view.sid && !viewer() && !(S.leaseOn && S.holder == null)) {
    try { controls.fromSession(await request('session/resume', { sessionId: link.view.sid, cwd: '/', mcpServers: [] })); } catch (e) { /* not resumable */ }
  }
}
function onMessage(o, live, q) {
  if (o.method && o.id != null) {
    if (o.method === 'session/request_permission') {
      const fresh = tr.askCard(o);
      if (viewer()) tr.setAskButtons(tr.asks.get(String(o.id)), false);
      if (live && !S.busy) setBusy(true);
      if (fresh && live) {
        const tc = (o.params && o.params.toolCall) || {};
        att.alert('The agent needs you', tc.title || 'A permission request is waiting', 'ask-' + o.id);
      }
      sessions.render();
    } else tr.notice('request ' + o.method + ' (not supported here; Stop cancels the turn)', 'json');
    return;
  }
  if (o.method) {
    const p = o.params || {};
    switch (o.method) {
      case 'session/update':
        tr.onUpdate(p, live);
        if (p.update && p.update.sessionUpdate === 'user_message_chunk' && !sessions.title(link.view.sid)) setHeader();
        break;
      case '_relay/ask_resolved': tr.resolveAsk(p.id, p.outcome, p.by); sessions.render(); break;
      case '_relay/control': setLease(p.lease, p.holder); break;
      case '_relay/agent_exited': tr.agentExited(p); if (live) setBusy(false); break;
      case '_relay/workspace_changed':
        // another project's change is not this view's
        if (!p.project || !place().project || p.project === place().project) { files.changed(p.path); changes.changed(p.path); }
        break;
      case '_relay/agent/log_line': controls.logLine(p); break;
      default:
        if (!listeners.has(o.method) && typeof o.rseq === 'number' && !o.method.startsWith('_relay/terminal/')) tr.notice(o.method + ' ' + JSON.stringify(p).slice(0, 300), 'json');
    }
    const ls = listeners.get(o.method);
    if (ls) for (const fn of ls) { try { fn(p); } catch (e) { console.error(e); } }
    return;
  }
  if (o.id == null) { if (o.error) toast(o.error.message || 'error'); return; }
  const id = String(o.id), e = o.error;
  if (id.startsWith('perm:')) {
    const a = tr.asks.get(id);
    if (e) { const m = e.code === -32010 ? leaseHint() : e.message || 'error'; if (a && !a._done) { a._n.textContent = m; tr.setAskButtons(a, true); } }
    return;
  }
  const isPrompt = (q && q.method === 'session/prompt') || (!q && (tr.promptIds.has(id) || (o.result && o.result.stopReason != null)));
  if (q && q.method === 'session/prompt' && e && (e.code === -32011 || e.code === -32010)) {
    if (q.text && !$('input').value) { $('input').value = q.text; grow(); }
    if (e.code === -32011) { toast(e.message || 'The agent is busy; wait or press Stop.'); setBusy(true); }
    else { leaseHint(); setBusy(false); }
    return;
  }
  if (isPrompt && (typeof o.rseq === 'number' || q)) {
    tr.turnEnd(o);
    if (live || q) {
      setBusy(false);
      att.alert(e ? 'The turn failed' : 'The agent is done', e ? e.message || '' : 'Stop reason: ' + ((o.result && o.result.stopReason) || 'end_turn'), 'turn');
    }
    sessions.refresh();
  }
}

// ---- sessions ----
async function loadSession(sid, quiet) {
  try {
    const r = await request('session/load', { sessionId: sid, cwd: '/', mcpServers: [] });
    controls.reset(); controls.fromSession(r);
    sessions.refresh();
  } catch (e) { if (!quiet) toast(e.code === -32010 ? leaseHint() : e.message || 'cannot open that session', 6000); }
}
// The project and agent a new session gets: the last ones chosen (kept
// per browser), when the relay still has them; else its defaults.
function choice() {
  const ps = S.meta.projects || [], as = S.meta.agents || [];
  const last = LS.get('newChoice', {}) || {};
  const project = ps.find(p => p.name === last.project) || ps[0];
  const agent = as.find(a => a.name === last.agent) || as[0];
  return { project, agent };
}
function fillNewSheet() {
  const c = choice();
  const fill = (sel, items, pick) => {
    sel.textContent = '';
    for (const it of items) {
      const o = sel.appendChild(el('option', '', it.name + (it.default ? ' (default)' : '')));
      o.value = it.name;
      if (pick && it.name === pick.name) o.selected = true;
    }
  };
  fill($('newProject'), S.meta.projects || [], c.project);
  fill($('newAgent'), S.meta.agents || [], c.agent);
  showPath();
}
function showPath() {
  const p = (S.meta.projects || []).find(x => x.name === $('newProject').value);
  $('newPath').textContent = p ? p.path : '';
}
$('newProject').addEventListener('change', showPath);
function openNewSheet() {
  if (viewer()) { leaseHint(); return; }
  sessions.closeMenu();
  fillNewSheet();
  openDialog($('newSheet'), closeNewSheet, $('newProject'));
}
function closeNewSheet() { closeDialog($('newSheet')); }
$('newClose').addEventListener('click', closeNewSheet);
$('newStart').addEventListener('click', () => {
  const c = { project: $('newProject').value, agent: $('newAgent').value };
  LS.set('newChoice', c);
  closeNewSheet();
  newSession(c);
});
// `want`: {project, agent} by name; default: the remembered choice.
async function newSession(want) {
  if (viewer()) { leaseHint(); return null; }
  const c = choice();
  const project = (S.meta.projects || []).find(p => p.name === (want && want.project)) || c.project;
  const agent = (S.meta.agents || []).find(a => a.name === (want && want.agent)) || c.agent;
  const params = { cwd: (project && project.path) || '/', mcpServers: [] };
  if (project || agent) params._meta = { relay: Object.assign({}, project ? { project: project.name } : {}, agent ? { agent: agent.name } : {}) };
  try {
    let r = await request('session/new', params);
    // the relay's first session/new claims the default session even if it has history: ask again
    if (r.sessionId === link.view.sid && link.view.seq > 0) r = await request('session/new', params);
    if (r.sessionId && r.sessionId !== link.view.sid) { link.setSession(r.sessionId, null); tr.clear(); tr.sid = r.sessionId; }
    S.title = '';
    controls.reset(); controls.fromSession(r);
    sessions.closeMenu();
    await sessions.refresh();
    setHeader();
    return r.sessionId;
  } catch (e) { toast(e.code === -32010 ? leaseHint() : e.message || 'cannot start a session', 6000); return null; }
}
// With one project and one agent there is nothing to ask.
$('newBtn').addEventListener('click', () => (several('projects') || several('agents') ? openNewSheet() : newSession()));

// ---- composer ----
const input = $('input');
function grow() { input.style.height = 'auto'; input.style.height = Math.min(input.scrollHeight + 2, window.innerHeight * 0.4) + 'px'; }
input.addEventListener('input', grow);
const desktop = matchMedia('(pointer:fine)').matches;
input.addEventListener('keydown', e => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && (desktop || e.ctrlKey || e.metaKey) && !controls.pal.open) { e.preventDefault(); submit(); }
});
$('composer').addEventListener('submit', e => { e.preventDefault(); submit(); });
async function submit() {
  const t = input.value;
  if (!t.trim() && !controls.attachments.length) return;
  if (viewer()) { leaseHint(); return; }
  if (!link.open) { toast('Not connected yet; your text is kept.'); link.reconnectNow(); return; }
  if (S.busy) { toast('The agent is still working; wait or press Stop.'); return; }
  controls.closePalette();
  let sid = link.view.sid;
  if (!sid) { sid = await newSession(); if (!sid) return; }
  if (!S.title && !sessions.title(sid)) { S.title = t.trim().split('\n')[0].slice(0, 60); setHeader(); }
  const prompt = [];
  if (t.trim()) prompt.push({ type: 'text', text: t });
  prompt.push(...controls.takeBlocks());
  input.value = ''; grow();
  setBusy(true); tr.stick = true;
  link.request('session/prompt', { sessionId: sid, prompt }, { text: t }).catch(() => {});
}
$('stop').addEventListener('click', () => { if (link.notify('session/cancel', { sessionId: link.view.sid })) toast('Cancelling…', 2000); });

// ---- menu extras ----
$('devSave').addEventListener('click', () => {
  const name = slug($('devName').value);
  if (!name) { toast('Give this device a name: letters and digits.'); return; }
  const suffix = clientId.slice(-8);
  // the relay knows devices by id: control held under the old name is taken
  // again under the new one once the link is back
  S.retake = S.leaseOn && S.holder === clientId ? clientId : null;
  clientId = name + '-' + suffix;
  LS.set('client', clientId);
  link.clientId = clientId;
  toast('This device is now “' + name + '”.');
  sessions.closeMenu();
  link.reconnectNow();
});
$('agentBtn').addEventListener('click', async () => {
  sessions.closeMenu();
  if (!several('agents')) { controls.openAgent(S.authMethods, S.agentName, null); return; }
  // This session's agent (or the one New would start), by its relay name;
  // initialize again for what each agent said once it started.
  try { const r = await request('initialize', { protocolVersion: 1, clientCapabilities: {}, clientInfo: { name: 'acp-relay-web', version: '1' } }); S.meta = (r._meta && r._meta.relay) || S.meta; } catch (e) { /* keep what is known */ }
  const name = place().agent || (choice().agent || {}).name;
  const a = (S.meta.agents || []).find(x => x.name === name);
  if (!a) { controls.openAgent(S.authMethods, S.agentName, null); return; }
  const info = a.agentInfo || {};
  const label = a.name + (info.title || info.name ? ' · ' + (info.title || info.name) : a.initialized ? '' : ' (not started yet)');
  controls.openAgent(a.authMethods || [], label, a.name);
});
$('unpairBtn').addEventListener('click', () => {
  LS.del('token'); token = ''; link.setToken(''); sessions.closeMenu(); link.drop();
  showPair('Unpaired. Paste a token to connect again.');
});

// ---- pairing ----
function showPair(msg) {
  $('banner').hidden = true;
  $('pair').hidden = false;
  if (msg) $('pairMsg').textContent = msg;
  const t = $('tok');
  t.value = '';
  t.focus();
}
$('pairForm').addEventListener('submit', e => {
  e.preventDefault();
  let v = $('tok').value.trim();
  const m = v.match(/[#&?]token=([^&\s]+)/);
  if (m) v = decodeURIComponent(m[1]);
  if (!v) return;
  token = v; LS.set('token', v);
  $('pair').hidden = true;
  link.setToken(v);
  link.reconnectNow();
});

// ---- scroll kept across reloads ----
let scrollTimer = 0;
function saveScroll(top, stick) {
  clearTimeout(scrollTimer);
  scrollTimer = setTimeout(() => { try { sessionStorage.setItem('acpr.scroll', JSON.stringify({ sid: link.view.sid, top, stick })); } catch (e) { /* private mode */ } }, 200);
}
function savedScroll(sid) {
  try { const s = JSON.parse(sessionStorage.getItem('acpr.scroll') || 'null'); return s && s.sid === sid && !s.stick ? s.top : null; } catch (e) { return null; }
}

// ---- wake ----
function wake() { if (document.visibilityState === 'visible' && link.token && !link.stopped && (!link.ws || link.ws.readyState > 1)) link.reconnectNow(); }
document.addEventListener('visibilitychange', wake);
window.addEventListener('online', wake);
window.addEventListener('pageshow', wake);

if ('serviceWorker' in navigator && (location.protocol === 'https:' || ['localhost', '127.0.0.1', '[::1]'].includes(location.hostname))) {
  navigator.serviceWorker.register('/sw.js').catch(() => {});
}

// `#session=ID` on load: attach to that session (the welcome, or a session/load
// after it when the relay attached this device elsewhere).
if (firstHash.session) link.setSession(firstHash.session, null);
window.addEventListener('hashchange', () => {
  const h = readHash();
  if (h.token && h.token !== link.token) { link.setToken(h.token); $('pair').hidden = true; link.reconnectNow(); }
  if (!h.session || h.session === link.view.sid) return;
  if (link.open && !h.token) loadSession(h.session);
  else { link.setSession(h.session, null); if (link.token) link.reconnectNow(); }
});

setConn('off');
setHeader();
if (token) { link.setToken(token); link.connect(); } else showPair();

// For tests and debugging: read-only views of the page's state.
window.acpRelay = {
  get view() { return link.view; }, get ws() { return link.ws; }, get clientId() { return clientId; },
  get notes() { return att.record; }, get stick() { return tr.stick; }, get stopped() { return link.stopped; }, transcript: tr,
};
