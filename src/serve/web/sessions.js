// The sessions menu: title, time, busy and "needs you" badges, open and
// delete; and this device's name (part of its client id, so it shows in
// "answered by" on other devices).
import { $, el, button, toast, short, when, openDialog, closeDialog } from './dom.js';

// How often the list is asked for again while the page is shown: asks open
// in other sessions reach this device only through session/list.
const POLL_MS = 10000;

export class Sessions {
  constructor(app) {
    this.app = app; // {request, sid(), load(sid), isController(), needs(sid)}
    this.list = [];
    $('sessBtn').addEventListener('click', () => ($('menu').hidden ? this.openMenu() : this.closeMenu()));
    $('refBtn').addEventListener('click', () => this.refresh());
    setInterval(() => { if (!document.hidden && this.app.connected && this.app.connected()) this.refresh(); }, POLL_MS);
    document.addEventListener('click', e => {
      const m = $('menu');
      if (!m.hidden && !m.contains(e.target) && !$('sessBtn').contains(e.target)) this.closeMenu();
    });
  }
  title(sid) { const s = this.list.find(x => x.sessionId === sid); return s && s.title; }
  async refresh() {
    try { const r = await this.app.request('session/list', {}); this.list = (r && r.sessions) || []; }
    catch (e) { return; }
    this.render();
    if (this.app.onList) this.app.onList();
  }
  render() {
    const ul = $('slist');
    // the list is drawn again (polled): a row button with the focus keeps it
    const f = document.activeElement, had = f && ul.contains(f) && f.dataset.sid ? [f.dataset.sid, f.className] : null;
    ul.textContent = '';
    this.badge();
    if (!this.list.length) { ul.appendChild(el('li', 'mut', 'No sessions yet.')); return; }
    const ss = this.list.slice().sort((a, b) => String(b.updatedAt || '').localeCompare(String(a.updatedAt || '')));
    const ctl = this.app.isController();
    const places = this.app.places ? this.app.places() : { projects: [], agents: [] };
    const rel = s => (s._meta && s._meta.relay) || {};
    // With several projects: one group per project (the relay's order), newest first in each.
    const groups = places.projects.length > 1
      ? places.projects.map(p => [p, ss.filter(s => rel(s).project === p.name)])
        .concat([[{ name: 'other' }, ss.filter(s => !places.projects.some(p => p.name === rel(s).project))]])
        .filter(([, rows]) => rows.length)
      : [[null, ss]];
    for (const [project, rows] of groups) {
      if (project) {
        const h = ul.appendChild(el('li', 'grp', project.name + ' '));
        if (project.path) h.appendChild(el('span', 'mut', project.path));
      }
      for (const s of rows) this.row(ul, s, ctl, places.agents.length > 1);
    }
    if (had) { const b = [...ul.querySelectorAll('button')].find(x => x.dataset.sid === had[0] && x.className === had[1]); if (b) b.focus(); }
  }
  // One session's row; `agents`: tag it with its agent's name.
  row(ul, s, ctl, agents) {
    const li = ul.appendChild(el('li'));
    const b = li.appendChild(button('', 'open', () => { this.closeMenu(); if (s.sessionId !== this.app.sid()) this.app.load(s.sessionId); }));
    const meta = (s._meta && s._meta.relay) || {};
    b.dataset.sid = s.sessionId;
    b.appendChild(el('div', '', s.title || short(s.sessionId)));
    const tags = b.appendChild(el('div', 'tagrow'));
    const t = when(s.updatedAt);
    if (t) tags.appendChild(el('span', 'mut', t));
    if (agents && meta.agent) tags.appendChild(el('span', 'tag agent', meta.agent));
    if (meta.busy) tags.appendChild(el('span', 'tag busy', 'busy'));
    const needs = this.app.needs(s.sessionId, meta);
    if (needs) tags.appendChild(el('span', 'tag needs', 'needs you'));
    if (s.sessionId === this.app.sid()) b.setAttribute('aria-current', 'true');
    const del = li.appendChild(button('Delete', 'dan ctl', () => this.remove(s), 'Delete session ' + (s.title || s.sessionId)));
    del.dataset.sid = s.sessionId;
    del.disabled = !ctl || !!meta.busy;
    if (meta.busy) del.title = 'Busy: stop its turn first';
  }
  // The Sessions button counts the sessions waiting for an answer (the
  // relay's pendingAsks; this session's own open cards too).
  badge() {
    const rel = s => (s._meta && s._meta.relay) || {};
    let n = this.list.filter(s => this.app.needs(s.sessionId, rel(s))).length;
    const sid = this.app.sid();
    if (sid && !this.list.some(s => s.sessionId === sid) && this.app.needs(sid, null)) n++;
    const b = $('needsBadge');
    b.textContent = n ? String(n) : '';
    b.hidden = !n;
    $('sessBtn').setAttribute('aria-label', n ? 'Sessions, ' + n + ' need you' : 'Sessions');
  }
  async remove(s) {
    try {
      await this.app.request('_relay/session/delete', { sessionId: s.sessionId });
      toast('Deleted ' + (s.title || short(s.sessionId)));
      this.list = this.list.filter(x => x.sessionId !== s.sessionId);
      this.render();
      if (s.sessionId === this.app.sid() && this.app.onDeleted) this.app.onDeleted();
    } catch (e) { toast(e.message || 'could not delete', 6000); }
  }
  openMenu() { $('devName').value = this.app.deviceName(); openDialog($('menu'), () => this.closeMenu()); $('sessBtn').setAttribute('aria-expanded', 'true'); this.refresh(); }
  closeMenu() { closeDialog($('menu')); $('sessBtn').setAttribute('aria-expanded', 'false'); }
}
