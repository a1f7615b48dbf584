// Labels: the selection (or one object of a grid) marked interesting (1) or not (0), with an optional tag.
// The live page sends them to the server (kept in labels.lance, h.labels() in Python); the standalone
// page keeps them in the page, marks them, and exports them as CSV for h.label("labels.csv").
function hyraxModel(name) {
  for (const doc of Bokeh.documents) {
    const model = doc.get_model_by_name(name);
    if (model) return model;
  }
  return null;
}

const MARK_COLOURS = { 1: "#d62728", 0: "#7f7f7f" };

function pageMarks(source, store) {
  const data = source.data;
  const where = new Map(data.object_id.map((id, i) => [String(id), i]));
  const marks = { object_id: [], x: [], y: [], label: [], colour: [] };
  for (const [id, entry] of Object.entries(store)) {
    if (!where.has(id) || entry.label === null) continue;
    const i = where.get(id);
    marks.object_id.push(id);
    marks.x.push(data.map_x[i]);
    marks.y.push(data.map_y[i]);
    marks.label.push(entry.label);
    marks.colour.push(MARK_COLOURS[entry.label]);
  }
  return marks;
}

// ids: an array of object ids, or null for the page's selection (on the live page: every object inside
// the box or lasso, drawn or not).
function hyraxLabel(ids, value) {
  const source = hyraxModel("points");
  const labelled = hyraxModel("labelled");
  const status = hyraxModel("label_status");
  const tagInput = hyraxModel("label_tag");
  const live = hyraxModel("rank_button") !== null;
  const tag = tagInput ? tagInput.value.trim() : "";
  if (ids === null && !live) {
    ids = source.selected.indices.map((i) => String(source.data.object_id[i]));
  }
  if (ids !== null && ids.length === 0) {
    status.text = "<i>Select objects first (lasso, box or tap), then label them.</i>";
    return Promise.resolve(0);
  }
  const word = value === 1 ? "interesting" : value === 0 ? "not interesting" : "tagged";
  if (!live) {
    window._hyrax_labels = window._hyrax_labels || {};
    for (const id of ids) window._hyrax_labels[id] = { label: value, tag: tag };
    labelled.data = pageMarks(source, window._hyrax_labels);
    status.text = "<b>" + ids.length + " labelled " + word + "</b> (" +
      Object.keys(window._hyrax_labels).length + " in this page: download them as CSV)";
    return Promise.resolve(ids.length);
  }
  const body = { label: value, tag: tag };
  if (ids === null) body.selection = true;
  else body.object_id = ids;
  const pending = ids === null ? window._hyrax_selection_sent : null;
  const sent = (pending || Promise.resolve()).catch(() => null);
  return sent.then(() => postJSON("label", body)).then((answer) => {
    if (answer.error) {
      status.text = "<i>" + esc(answer.error) + "</i>";
      return 0;
    }
    labelled.data = answer.marks;
    status.text = "<b>" + answer.labelled.toLocaleString("en") + " labelled " + word + "</b> (" +
      answer.total.toLocaleString("en") + " objects labelled in all: <code>h.labels()</code>)";
    window._hyrax_labelled = (window._hyrax_labelled || 0) + 1;
    return answer.labelled;
  });
}

// A grid tile's label buttons: the id travels in a data attribute (escaped), never in code.
function labelButtons(id) {
  return (
    '<br><button class="hyrax-label" data-id="' + esc(id) + '" data-value="1" title="interesting" ' +
    'onclick="hyraxLabel([this.dataset.id], 1)">1</button><button class="hyrax-label" data-id="' +
    esc(id) + '" data-value="0" title="not interesting" onclick="hyraxLabel([this.dataset.id], 0)">0</button>'
  );
}

function labelsCSV(store) {
  const data = { object_id: [], label: [], tag: [] };
  for (const [id, entry] of Object.entries(store)) {
    data.object_id.push(id);
    data.label.push(entry.label === null ? "" : entry.label);
    data.tag.push(entry.tag || "");
  }
  return csvText(data, ["object_id", "label", "tag"]);
}

// Keys 1 and 0 label the selection (not while typing a tag).
function listenForLabelKeys() {
  if (window._hyrax_keys) return;
  window._hyrax_keys = true;
  window.hyraxLabel = hyraxLabel;
  document.addEventListener("keydown", (event) => {
    const typing = event.composedPath().some((e) => e.tagName === "INPUT" || e.tagName === "TEXTAREA");
    if (typing || (event.key !== "1" && event.key !== "0")) return;
    hyraxLabel(null, Number(event.key));
  });
}
