// Keeps the page live: when the service says the log moved, fetch this page's live part again and
// swap it in; when the stream breaks, say "service down" over what was last shown, and keep trying.
(function () {
  "use strict";
  var badge = document.getElementById("connection");
  var main = document.getElementById("live");
  var shown = Number(main.dataset.seq || 0);  // the log's head the page was drawn at
  var fetching = false, again = false;

  function show(state, text) { badge.dataset.state = state; badge.textContent = text; }

  function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error(r.status);
        shown = Math.max(shown, Number(r.headers.get("X-Log-Seq") || 0));
        return r.text();
      })
      .then(function (html) { main.innerHTML = html; document.dispatchEvent(new Event("nanoclaw:updated")); })
      .catch(function () { show("down", "service down"); })
      .finally(function () { fetching = false; if (again) { again = false; refresh(); } });
  }

  function connect() {
    var source = new EventSource("/live");
    source.addEventListener("changed", function (event) {
      show("live", "live");
      if (Number(event.data) > shown) refresh();  // the first event only says where the log is
    });
    source.onerror = function () { show("down", "service down"); };
  }

  connect();
})();
