// The /stallz page's script (embedded at build time by cmake/embed_file.cmake).
//
// Every 2 s it fetches the page again (same URL, never cached) and swaps the server's fresh
// <main> and sample count into this one. It formats and builds nothing: the server
// (stallz_html.cpp) is the one renderer of every table, so the page never disagrees with itself,
// and works the same without JavaScript. The fetched page is parsed by DOMParser, which runs no
// script and loads nothing; what is swapped in is the server's HTML, escaped as on first load.
(function () {
  'use strict';
  var refreshes = 0;
  function status(state, text) {
    document.getElementById('status').setAttribute('data-state', state);
    document.getElementById('status-text').textContent = text;
  }
  function swap(fresh, selector) {
    var now = fresh.querySelector(selector), old = document.querySelector(selector);
    if (!now || !old) throw new Error('the page has no ' + selector);
    old.parentNode.replaceChild(document.importNode(now, true), old);
  }
  function tick() {
    fetch(location.href, {cache: 'no-store'})
        .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
        .then(function (text) {
          var fresh = new DOMParser().parseFromString(text, 'text/html');
          swap(fresh, 'main');
          swap(fresh, '#samples');
          document.documentElement.setAttribute('data-refreshes', String(++refreshes));
          status('live', 'live, ' + fresh.getElementById('status-text').textContent);
        })
        .catch(function (e) {
          status('stale', 'refresh failed (' + e.message + '); the data may be old');
        })
        .then(function () { setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
})();
