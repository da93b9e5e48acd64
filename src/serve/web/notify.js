// Attention while the page is hidden: a system notification (after the
// person enabled them with a tap), a count in the title, a vibration.
import { $, LS } from './dom.js';

// Most notifications remembered for the page's own record (tests read it).
const MAX_RECORD = 20;

export class Attention {
  constructor() {
    this.count = 0;
    this.base = 'acp-relay';
    this.record = [];
    document.addEventListener('visibilitychange', () => { if (!document.hidden) this.clear(); });
    window.addEventListener('focus', () => this.clear());
    $('notifyBtn').addEventListener('click', () => this.enable());
    this.paint();
  }
  get supported() { return typeof Notification !== 'undefined'; }
  get enabled() { return this.supported && Notification.permission === 'granted' && LS.get('notify', true); }
  paint() {
    const b = $('notifyBtn'), t = $('notifyTxt');
    if (!this.supported) { b.hidden = true; t.textContent = 'This browser has no notifications; the title shows a count instead.'; return; }
    if (Notification.permission === 'denied') { b.hidden = true; t.textContent = 'Notifications are blocked in this browser\'s site settings.'; return; }
    b.textContent = this.enabled ? 'Notifications on' : 'Enable notifications';
    b.setAttribute('aria-pressed', String(this.enabled));
  }
  async enable() {
    if (!this.supported) return;
    if (Notification.permission !== 'granted') { try { await Notification.requestPermission(); } catch (e) { /* old API */ } LS.set('notify', true); }
    else LS.set('notify', !LS.get('notify', true));
    this.paint();
  }
  setTitle(t) { this.base = t || 'acp-relay'; this.paintTitle(); }
  paintTitle() { document.title = (this.count ? '(' + this.count + ') ' : '') + this.base; }
  clear() { if (this.count) { this.count = 0; this.paintTitle(); } }
  // Called when an ask opens or a turn ends; only acts while hidden.
  async alert(title, body, tag) {
    if (!document.hidden) return;
    this.count++;
    this.paintTitle();
    if (navigator.vibrate) { try { navigator.vibrate([120, 60, 120]); } catch (e) { /* not allowed */ } }
    if (!this.enabled) return;
    this.record.push({ title, body, tag });
    if (this.record.length > MAX_RECORD) this.record.shift();
    const opts = { body, tag: tag || 'acp-relay', icon: '/icon-192.png', renotify: true };
    try {
      const reg = navigator.serviceWorker && await navigator.serviceWorker.getRegistration();
      if (reg && reg.showNotification) { await reg.showNotification(title, opts); return; }
    } catch (e) { /* fall back to the page's own */ }
    try { const n = new Notification(title, opts); n.onclick = () => { window.focus(); n.close(); }; } catch (e) { /* phones need the worker */ }
  }
}
