// The engineer's pages on a phone without a network (a basement plant room, a lift shaft).
// Served as /console/engineer/sw.js with the scope /console/engineer: it controls only the
// engineer's screens. While online every page comes from the network as usual and a copy is
// kept; offline, the last copy of a page (or of a static asset) is shown instead, and a page
// never saved answers with the saved offline notice. Nothing else is cached: no POST (actions
// are never queued: the page says they were not sent), no live feed, no other role's screens,
// no redirect (an expired session). Logging in or out clears every copy (Clear-Site-Data).
"use strict";

var CACHE = "vigil-engineer-v1";
var OFFLINE = "/console/engineer/offline";

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(CACHE).then(function (cache) { return cache.add(OFFLINE); })
      .then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(self.clients.claim());
});

function keyOf(request) {
  var url = new URL(request.url);
  if (url.origin !== self.location.origin || request.method !== "GET") { return null; }
  if (url.pathname.indexOf("/console/static/") === 0) { return request.url; }
  if (request.mode !== "navigate") { return null; }
  var page = url.pathname === "/console/engineer" ||
    url.pathname.indexOf("/console/engineer/tickets/") === 0;
  // A page's copy is kept by path: "?done=accept" after an action is the same page.
  return page ? url.origin + url.pathname : null;
}

self.addEventListener("fetch", function (event) {
  var key = keyOf(event.request);
  if (key === null) { return; }
  event.respondWith(
    fetch(event.request).then(function (response) {
      if (response.ok && !response.redirected && response.type === "basic") {
        var copy = response.clone();
        event.waitUntil(caches.open(CACHE).then(function (cache) { return cache.put(key, copy); }));
      }
      return response;
    }).catch(function (error) {
      return caches.open(CACHE).then(function (cache) {
        return cache.match(key).then(function (kept) {
          if (kept) { return kept; }
          if (event.request.mode === "navigate") { return cache.match(OFFLINE); }
          throw error;
        });
      });
    })
  );
});
