// Escapes a value for HTML: ids, metadata and server messages are data, never markup.
// Every script of the map that builds HTML starts with this file.
function esc(value) {
  const entities = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  return String(value).replace(/[&<>"']/g, (c) => entities[c]);
}

// The page's request counter: the server ignores a selection older than the last one it recorded. It
// follows the clock, so that a reloaded page (or a second one) is not taken for an older one.
function nextSequence() {
  window._hyrax_seq = Math.max(Date.now(), (window._hyrax_seq || 0) + 1);
  return window._hyrax_seq;
}

// An address of the live server with the page's session token: the server answers only requests that
// carry it. The page was opened with ?token=... (the address `hyrax visualize` printed, or the notebook's
// frame) and passes it on, since a browser may withhold the server's cookie inside a notebook's frame.
function withToken(path) {
  const token = new URLSearchParams(window.location.search).get("token");
  return token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path;
}

// POST a JSON body to the live server (same origin); a promise of the parsed answer.
function postJSON(path, body) {
  return fetch(withToken(path), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  }).then((r) => r.json());
}

// POST the page's selection (ids or a region); labels of "the selection" wait for the last one sent, so
// the server labels what the page shows as selected.
function postSelection(body) {
  window._hyrax_selection_sent = postJSON("selection", body);
  return window._hyrax_selection_sent;
}
