/* Live dashboard pages (see calls/consumers.py and calls/live.py).
 *
 * Every element with data-live-socket="/ws/..." opens that WebSocket. The server only says "call.changed";
 * the page then re-fetches itself (at most every 500 ms) and swaps in the new content of each
 * [data-live-region] element, matched by id. The server never sends page content over the socket, so the
 * page shows exactly what a normal load would, with the same permissions.
 *
 * A dropped socket reconnects with backoff (1 s, 2 s, 4 s ... 30 s) while the page is open, and re-reads the
 * page once it is back, in case a change was missed. A socket the server refused (4403 not allowed, 4404 no
 * such call) is not retried. When a fetched region no longer carries data-live-socket (the call ended), its
 * socket is closed.
 */
(function () {
  "use strict";

  var MIN_REFRESH_GAP_MS = 500;
  var MAX_BACKOFF_MS = 30000;
  var REFUSED_CODES = [4403, 4404];

  var sockets = new Map(); // path -> {ws, attempts, opened, refused, retryTimer}
  var pageActive = true;
  var refreshTimer = null;
  var refreshing = false;
  var refreshAgain = false;
  var lastRefreshAt = 0;

  function socketUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  function wantedPaths() {
    var paths = new Set();
    document.querySelectorAll("[data-live-socket]").forEach(function (element) {
      var path = element.getAttribute("data-live-socket");
      if (path && path.charAt(0) === "/" && path.charAt(1) !== "/") paths.add(path); // our own origin only
    });
    return paths;
  }

  /* Open a socket for every path on the page; close those no longer on it. */
  function syncSockets() {
    if (!pageActive) return;
    var wanted = wantedPaths();
    wanted.forEach(function (path) {
      if (!sockets.has(path)) connect(path, {ws: null, attempts: 0, opened: false, refused: false, retryTimer: null});
    });
    Array.from(sockets.keys()).forEach(function (path) {
      if (!wanted.has(path)) stopSocket(path);
    });
  }

  function connect(path, state) {
    sockets.set(path, state);
    state.retryTimer = null;
    var ws;
    try {
      ws = new WebSocket(socketUrl(path));
    } catch (error) {
      return; // a malformed path: nothing to listen to
    }
    state.ws = ws;
    ws.onopen = function () {
      if (state.opened) scheduleRefresh(); // back after a drop: a change may have been missed
      state.opened = true;
      state.attempts = 0;
    };
    ws.onmessage = function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message && message.type === "call.changed") scheduleRefresh();
    };
    ws.onclose = function (event) {
      if (sockets.get(path) !== state || state.ws !== ws || !pageActive) return; // stopped on purpose
      if (REFUSED_CODES.indexOf(event.code) !== -1) {
        state.refused = true; // kept in the map so it is not reopened
        return;
      }
      var delay = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, state.attempts)) * (0.75 + Math.random() * 0.5);
      state.attempts += 1;
      state.retryTimer = setTimeout(function () {
        if (sockets.get(path) === state && pageActive) connect(path, state);
      }, delay);
    };
  }

  function stopSocket(path) {
    var state = sockets.get(path);
    sockets.delete(path);
    if (!state) return;
    if (state.retryTimer !== null) clearTimeout(state.retryTimer);
    if (state.ws && state.ws.readyState <= WebSocket.OPEN) state.ws.close(1000);
  }

  function scheduleRefresh() {
    if (!pageActive) return;
    if (refreshing) {
      refreshAgain = true;
      return;
    }
    if (refreshTimer !== null) return;
    var wait = Math.max(0, lastRefreshAt + MIN_REFRESH_GAP_MS - Date.now());
    refreshTimer = setTimeout(refresh, wait);
  }

  function refresh() {
    refreshTimer = null;
    refreshing = true;
    lastRefreshAt = Date.now();
    fetch(location.href, {credentials: "same-origin", cache: "no-store", headers: {"X-Requested-With": "live-update"}})
      .then(function (response) {
        // Signed out, or the page is gone: leave what is shown; a normal navigation will tell the user.
        if (!response.ok || response.redirected) return null;
        return response.text();
      })
      .then(function (html) {
        if (html !== null && pageActive) applyPage(new DOMParser().parseFromString(html, "text/html"));
      })
      .catch(function () { /* offline for a moment: the next change or reconnect tries again */ })
      .then(function () {
        refreshing = false;
        if (refreshAgain) {
          refreshAgain = false;
          scheduleRefresh();
        }
      });
  }

  function applyPage(doc) {
    var regions = document.querySelectorAll("[data-live-region]");
    var vanished = false;
    regions.forEach(function (region) {
      var fresh = region.id ? doc.getElementById(region.id) : null;
      if (!fresh) {
        vanished = true;
        return;
      }
      replaceContent(region, fresh);
      var socket = fresh.getAttribute("data-live-socket");
      if (socket) region.setAttribute("data-live-socket", socket);
      else region.removeAttribute("data-live-socket");
    });
    var main = document.getElementById("main");
    var freshMain = doc.getElementById("main");
    if (vanished && main && freshMain) {
      // The page no longer has a live part (e.g. the call ended and its page is now static): show it whole.
      replaceContent(main, freshMain);
    }
    syncSockets();
  }

  /* Swap in new content, keeping keyboard focus on the same control when it still exists. */
  function replaceContent(target, fresh) {
    var active = document.activeElement;
    var focusedId = active && active.id && target.contains(active) ? active.id : null;
    target.innerHTML = fresh.innerHTML;
    if (focusedId) {
      var again = document.getElementById(focusedId);
      if (again) again.focus();
    }
  }

  window.addEventListener("pagehide", function () {
    pageActive = false;
    if (refreshTimer !== null) clearTimeout(refreshTimer);
    refreshTimer = null;
    Array.from(sockets.keys()).forEach(stopSocket);
  });
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return; // restored from the back/forward cache: listen again and catch up
    pageActive = true;
    syncSockets();
    scheduleRefresh();
  });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", syncSockets);
  else syncSockets();
})();
