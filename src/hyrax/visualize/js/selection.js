// A lasso, box or tap selection fills the table and the image grid; on the live page, the selected ids
// go to the server, where view.selected() returns them to Python.
function showSelection(source, selected, grid, names, live) {
  const rows = source.selected.indices;
  const data = source.data;
  const out = { object_id: rows.map((i) => data.object_id[i]) };
  for (const name of names) {
    out[name] = rows.map((i) => data[name][i]);
  }
  selected.data = out;
  if (live) {
    postSelection({ object_id: out.object_id, seq: nextSequence() });
  }
  const tiles = rows.slice(0, 60).map(
    (i) =>
      '<img class="hyrax-thumb" title="' + esc(data.object_id[i]) + '" src="' + esc(data.map_thumbnail[i]) +
      '" width="64" height="64">'
  );
  grid.text = "<b>" + rows.length + " selected</b><br>" + tiles.join("");
}
