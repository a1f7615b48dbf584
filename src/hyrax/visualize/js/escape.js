// Escapes a value for HTML: ids, metadata and server messages are data, never markup.
// Every script of the map that builds HTML starts with this file.
function esc(value) {
  const entities = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  return String(value).replace(/[&<>"']/g, (c) => entities[c]);
}

// The page's request counter: the server ignores a selection older than the last one it recorded.
function nextSequence() {
  window._hyrax_seq = (window._hyrax_seq || 0) + 1;
  return window._hyrax_seq;
}

// POST a JSON body to the live server (same origin); a promise of the parsed answer.
function postJSON(path, body) {
  return fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  }).then((r) => r.json());
}
