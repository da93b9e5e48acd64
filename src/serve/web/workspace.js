// The workspace screens: a lazy file tree (git-ignore aware: the relay
// leaves ignored files out), a file viewer with line numbers, an editor that
// saves with a sha256 check (a conflict shows both versions), and git status
// with a coloured per-file diff. `_relay/workspace_changed` refreshes what is open.
import { el, button, toast } from './dom.js';
import { unifiedView, diffView } from './transcript.js';

// Most lines drawn in the viewer; the rest is one "more" line.
const MAX_VIEW_LINES = 20000;

export class Files {
  constructor(root, app) {
    this.app = app; // {request, isController(), root()}
    this.root = root;
    this.open = null; // {path, content, sha256, line}
    this.editing = false;
    this.loaded = new Map(); // dir path -> ul
    root.textContent = '';
    this.ws = root.appendChild(el('div', 'ws'));
    this.side = this.ws.appendChild(el('div', 'pane side'));
    this.side.setAttribute('aria-label', 'Files');
    const bar = this.side.appendChild(el('div', 'bar'));
    bar.appendChild(el('strong', 'p', 'Files'));
    bar.appendChild(button('Refresh', '', () => this.refreshTree()));
    this.treeRoot = this.side.appendChild(el('ul', 'tree'));
    this.main = this.ws.appendChild(el('div', 'main'));
    this.bar = this.main.appendChild(el('div', 'bar'));
    this.back = this.bar.appendChild(button('← Files', 'back', () => this.ws.classList.remove('open')));
    this.pathEl = this.bar.appendChild(el('span', 'p', 'Pick a file'));
    this.editBtn = this.bar.appendChild(button('Edit', 'ctl', () => this.edit()));
    this.saveBtn = this.bar.appendChild(button('Save', 'pri ctl', () => this.save()));
    this.cancelBtn = this.bar.appendChild(button('Cancel', '', () => this.cancelEdit()));
    this.editBtn.hidden = this.saveBtn.hidden = this.cancelBtn.hidden = true;
    this.note = this.main.appendChild(el('div', 'conflict'));
    this.note.hidden = true;
    this.body = this.main.appendChild(el('div', 'body'));
    this.started = false;
  }
  show() { if (!this.started) { this.started = true; this.refreshTree(); } }
  // The session moved to another project: drop what was listed and shown
  // (an unsaved edit is kept on screen until it is saved or cancelled).
  projectChanged(visible) {
    if (this.editing && this.dirty()) return;
    this.open = null; this.editing = false; this.note.hidden = true;
    this.ws.classList.remove('open');
    this.pathEl.textContent = 'Pick a file';
    this.draw();
    this.treeRoot.textContent = '';
    this.started = false;
    if (visible) this.show();
  }
  async refreshTree() {
    this.loaded.clear();
    await this.loadDir('.', this.treeRoot);
    this.refreshMarks();
  }
  // git's letter beside each changed file in the tree
  async refreshMarks() {
    let r;
    try { r = await this.app.request('_relay/git/status', {}); } catch (e) { return; }
    this.marks = new Map((r.entries || []).map(e => [e.path, e.worktree !== ' ' ? e.worktree : e.index]));
    for (const b of this.side.querySelectorAll('button[data-path]')) this.mark(b);
  }
  mark(b) {
    const old = b.querySelector('.gm');
    if (old) old.remove();
    const m = this.marks && this.marks.get(b.dataset.path);
    if (m) { const s = b.appendChild(el('span', 'gm ' + (m === '?' ? 'Q' : m), ' ' + m)); s.title = 'git status ' + m; }
  }
  async loadDir(path, ul) {
    ul.textContent = '';
    ul.appendChild(el('li', 'mut', 'loading…'));
    let r;
    try { r = await this.app.request('_relay/fs/tree', { path, depth: 1 }); }
    catch (e) { ul.textContent = ''; ul.appendChild(el('li', 'err', e.message || 'cannot list')); return; }
    ul.textContent = '';
    this.loaded.set(path, ul);
    for (const e of r.entries || []) {
      const li = ul.appendChild(el('li'));
      const dir = e.kind === 'dir';
      const b = li.appendChild(button((dir ? '▸ ' : '') + e.name, '', null));
      b.dataset.path = e.path;
      b.title = e.path;
      this.mark(b);
      if (dir) {
        b.setAttribute('aria-expanded', 'false');
        const sub = li.appendChild(el('ul', 'tree'));
        sub.hidden = true;
        b.addEventListener('click', () => {
          const opening = sub.hidden;
          sub.hidden = !opening;
          b.setAttribute('aria-expanded', String(opening));
          b.textContent = (opening ? '▾ ' : '▸ ') + e.name;
          if (opening && !this.loaded.has(e.path)) this.loadDir(e.path, sub);
        });
      } else b.addEventListener('click', () => this.openFile(e.path));
    }
    if (r.truncated) ul.appendChild(el('li', 'mut', '… more entries not listed'));
    if (!ul.childElementCount) ul.appendChild(el('li', 'mut', 'empty'));
  }
  async openFile(path, line) {
    if (this.editing && this.dirty() && !confirm('Discard your unsaved edit?')) return;
    this.editing = false;
    this.note.hidden = true;
    this.ws.classList.add('open');
    this.pathEl.textContent = path + (line ? ':' + line : '');
    this.body.textContent = '';
    this.body.appendChild(el('div', 'mut', 'loading…'));
    for (const b of this.side.querySelectorAll('button[aria-current]')) b.removeAttribute('aria-current');
    let r;
    try { r = await this.app.request('_relay/fs/read', { path }); }
    catch (e) { this.body.textContent = ''; this.body.appendChild(el('div', 'err', e.message || 'cannot read')); this.open = null; this.buttons(); return; }
    this.open = { path: r.path || path, content: r.content, sha256: r.sha256, line, binary: !!r.binary, size: r.size, truncated: !!r.truncated };
    for (const b of this.side.querySelectorAll('button[data-path]')) if (b.dataset.path === this.open.path) b.setAttribute('aria-current', 'true');
    this.draw();
  }
  draw() {
    const o = this.open;
    this.body.textContent = '';
    this.buttons();
    if (!o) return;
    if (o.binary) { this.body.appendChild(el('div', 'mut', 'Binary file, ' + (o.size != null ? o.size + ' bytes' : 'size unknown') + ': not shown.')); return; }
    const code = this.body.appendChild(el('div', 'code'));
    code.setAttribute('role', 'region');
    code.setAttribute('aria-label', 'Contents of ' + o.path);
    const lines = String(o.content || '').split('\n');
    if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
    let hit = null;
    lines.slice(0, MAX_VIEW_LINES).forEach((t, i) => {
      const row = code.appendChild(el('div', 'ln'));
      row.appendChild(el('span', 'n', String(i + 1)));
      row.appendChild(el('span', 'c', t || ' '));
      if (o.line && i + 1 === Number(o.line)) { row.classList.add('hit'); hit = row; }
    });
    if (lines.length > MAX_VIEW_LINES || o.truncated) code.appendChild(el('div', 'mut', '… the rest of the file is not shown'));
    if (hit) requestAnimationFrame(() => hit.scrollIntoView({ block: 'center' }));
  }
  buttons() {
    const o = this.open, ctl = this.app.isController();
    const text = !!(o && !o.binary && !o.truncated);
    this.editBtn.hidden = !text || this.editing;
    this.editBtn.disabled = !ctl;
    this.saveBtn.hidden = this.cancelBtn.hidden = !this.editing;
    this.saveBtn.disabled = !ctl;
  }
  edit() {
    if (!this.open) return;
    this.editing = true;
    this.body.textContent = '';
    const ta = this.body.appendChild(el('textarea', 'editor ctl'));
    ta.value = this.open.content || '';
    ta.spellcheck = false;
    ta.setAttribute('aria-label', 'Edit ' + this.open.path);
    this.ta = ta;
    this.buttons();
    ta.focus();
  }
  dirty() { return this.ta && this.open && this.ta.value !== this.open.content; }
  cancelEdit() { this.editing = false; this.note.hidden = true; this.draw(); }
  async save(force) {
    const o = this.open;
    if (!o || !this.ta) return;
    const content = this.ta.value;
    const params = { path: o.path, content };
    if (!force && o.sha256) params.expectedSha256 = o.sha256;
    this.saveBtn.disabled = true;
    try {
      const r = await this.app.request('_relay/apply_edit', params);
      o.content = content; o.sha256 = r.sha256;
      this.editing = false; this.note.hidden = true;
      toast('Saved ' + o.path);
      this.draw();
    } catch (e) {
      if (e && e.data && e.data.conflict) await this.conflict(content);
      else toast(e.message || 'save failed', 6000);
    }
    this.buttons();
  }
  async conflict(mine) {
    const o = this.open;
    let theirs = '';
    try { const r = await this.app.request('_relay/fs/read', { path: o.path }); theirs = r.content || ''; o.disk = r; }
    catch (e) { theirs = '(the file cannot be read: ' + (e.message || '') + ')'; }
    const n = this.note;
    n.textContent = '';
    n.hidden = false;
    n.appendChild(el('strong', 'warn', 'The file changed since you opened it.'));
    const two = n.appendChild(el('div', 'two'));
    const a = two.appendChild(el('div'));
    a.appendChild(el('div', 'mut', 'On disk now'));
    a.appendChild(el('pre', 'theirs', theirs));
    const b = two.appendChild(el('div'));
    b.appendChild(el('div', 'mut', 'Your version'));
    b.appendChild(el('pre', 'mine', mine));
    n.appendChild(diffView(o.path + ' (disk → yours)', theirs, mine));
    const row = n.appendChild(el('div', 'b'));
    row.appendChild(button('Reload (drop my edit)', 'pri', () => { this.editing = false; this.openFile(o.path); }));
    row.appendChild(button('Save mine anyway', 'dan ctl', () => { if (o.disk) o.sha256 = o.disk.sha256; this.save(false); }));
  }
  changed(path) {
    // refresh the open file unless it is being edited, and the listing it is in
    const o = this.open;
    if (o && (!path || path === o.path || o.path.endsWith('/' + path) || path.endsWith('/' + o.path))) {
      if (this.editing) {
        if (!this.note.hidden) return;
        this.note.hidden = false;
        this.note.textContent = '';
        this.note.appendChild(el('span', 'warn', o.path + ' changed on disk while you edit it. Saving will show both versions.'));
      } else this.openFile(o.path, o.line);
    }
    if (this.started) {
      const dir = path && path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '.';
      const ul = this.loaded.get(dir);
      if (ul) this.loadDir(dir, ul).then(() => this.refreshMarks());
    }
  }
}

export class Changes {
  constructor(root, app) {
    this.app = app;
    root.textContent = '';
    this.ws = root.appendChild(el('div', 'ws'));
    this.side = this.ws.appendChild(el('div', 'pane side'));
    const bar = this.side.appendChild(el('div', 'bar'));
    this.branch = bar.appendChild(el('strong', 'p', 'Changes'));
    bar.appendChild(button('Refresh', '', () => this.refresh()));
    this.list = this.side.appendChild(el('ul', 'gst'));
    this.main = this.ws.appendChild(el('div', 'main'));
    const mb = this.main.appendChild(el('div', 'bar'));
    mb.appendChild(button('← Changes', 'back', () => this.ws.classList.remove('open')));
    this.pathEl = mb.appendChild(el('span', 'p', 'Pick a changed file'));
    this.openBtn = mb.appendChild(button('Open file', '', () => this.current && this.app.openFile(this.current)));
    this.openBtn.hidden = true;
    this.body = this.main.appendChild(el('div', 'body'));
    this.visible = false;
    this.current = null;
  }
  show() { this.visible = true; this.refresh(); }
  hide() { this.visible = false; }
  async refresh() {
    let r;
    try { r = await this.app.request('_relay/git/status', {}); }
    catch (e) { this.list.textContent = ''; this.list.appendChild(el('li', 'mut', e.message || 'not a git work tree')); return; }
    this.branch.textContent = (r.branch ? 'On ' + r.branch : 'Detached HEAD') + (r.ahead ? ' ↑' + r.ahead : '') + (r.behind ? ' ↓' + r.behind : '');
    this.list.textContent = '';
    for (const e of r.entries || []) {
      const li = this.list.appendChild(el('li'));
      const st = (e.index + e.worktree).replace(/ /g, '·');
      const b = li.appendChild(button('', '', () => this.diff(e)));
      b.dataset.path = e.path;
      const letter = e.worktree !== ' ' && e.worktree !== '?' ? e.worktree : e.index === '?' ? 'Q' : e.index;
      b.appendChild(el('span', 's ' + letter, st));
      b.appendChild(el('span', 'f', e.path + (e.origPath ? ' ← ' + e.origPath : '')));
      if (e.path === this.current) b.setAttribute('aria-current', 'true');
    }
    if (!this.list.childElementCount) this.list.appendChild(el('li', 'mut', 'No changes.'));
    if (this.current) {
      const e = (r.entries || []).find(x => x.path === this.current);
      if (e) this.diff(e, true);
    }
  }
  async diff(e, quiet) {
    this.current = e.path;
    this.ws.classList.add('open');
    this.pathEl.textContent = e.path;
    this.openBtn.hidden = false;
    for (const b of this.list.querySelectorAll('button')) b.setAttribute('aria-current', String(b.dataset.path === e.path));
    if (!quiet) { this.body.textContent = ''; this.body.appendChild(el('div', 'mut', 'loading…')); }
    try {
      if (e.index === '?') {
        const r = await this.app.request('_relay/fs/read', { path: e.path });
        this.body.textContent = '';
        this.body.appendChild(diffView(e.path + ' (untracked)', null, r.content || ''));
        return;
      }
      const [w, s] = await Promise.all([
        this.app.request('_relay/git/diff', { path: e.path }),
        this.app.request('_relay/git/diff', { path: e.path, staged: true }),
      ]);
      this.body.textContent = '';
      if (s.diff) { this.body.appendChild(el('div', 'mut', 'Staged')); this.body.appendChild(unifiedView(s.diff)); }
      if (w.diff) { if (s.diff) this.body.appendChild(el('div', 'mut', 'Not staged')); this.body.appendChild(unifiedView(w.diff)); }
      if (!s.diff && !w.diff) this.body.appendChild(el('div', 'mut', 'No textual difference.'));
      if (w.truncated || s.truncated) this.body.appendChild(el('div', 'mut', '… the diff was cut short'));
    } catch (err) { this.body.textContent = ''; this.body.appendChild(el('div', 'err', err.message || 'cannot diff')); }
  }
  changed() { if (this.visible) this.refresh(); }
}
