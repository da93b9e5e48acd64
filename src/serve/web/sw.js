// The service worker: makes the page installable and opens the last shell
// when the relay is out of reach. Network first; only the page's own files
// are cached (never the socket, never a token).
const CACHE = 'acp-relay-shell-v2';
const SHELL = ['/', '/app.css', '/app.js', '/dom.js', '/link.js', '/markdown.js', '/transcript.js', '/controls.js', '/workspace.js', '/sessions.js', '/notify.js', '/term.js', '/term.css', '/manifest.webmanifest', '/icon.svg', '/icon-180.png', '/icon-192.png', '/icon-512.png'];

self.addEventListener('install', e => {
  // one by one: a file this relay does not serve must not stop the others
  e.waitUntil(caches.open(CACHE).then(c => Promise.all(SHELL.map(u => c.add(u).catch(() => {})))).catch(() => {}).then(() => self.skipWaiting()));
});
self.addEventListener('activate', e => {
  e.waitUntil(caches.keys().then(ks => Promise.all(ks.filter(k => k !== CACHE).map(k => caches.delete(k)))).then(() => self.clients.claim()));
});
self.addEventListener('fetch', e => {
  const u = new URL(e.request.url);
  if (e.request.method !== 'GET' || u.origin !== location.origin || u.pathname === '/ws' || u.pathname === '/acp' || u.pathname === '/healthz' || u.pathname === '/metrics' || u.pathname === '/status') return;
  e.respondWith(fetch(e.request).then(r => {
    if (r.ok) { const copy = r.clone(); caches.open(CACHE).then(c => c.put(e.request, copy)).catch(() => {}); }
    return r;
  }).catch(() => caches.match(e.request, { ignoreSearch: true }).then(r => r || caches.match('/'))));
});
self.addEventListener('notificationclick', e => {
  e.notification.close();
  e.waitUntil(self.clients.matchAll({ type: 'window' }).then(cs => (cs.length ? cs[0].focus() : self.clients.openWindow('/'))));
});
