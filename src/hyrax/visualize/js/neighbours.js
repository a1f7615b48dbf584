// One selected object: it and its nearest neighbours. The standalone page carries them; the live page
// asks the server's vector index. Each tile has label buttons (labels.js).
function neighbourTile(src, id) {
  return (
    '<figure style="display:inline-block;margin:2px"><img class="hyrax-neighbour" src="' + esc(src) +
    '" width="64" height="64"><figcaption style="font-size:9px">' + esc(id) + labelButtons(id) +
    "</figcaption></figure>"
  );
}

function showNeighbours(source, near, live) {
  const rows = source.selected.indices;
  if (rows.length !== 1) {
    return;
  }
  const data = source.data;
  const i = rows[0];
  const title = "<b>Nearest neighbours of " + esc(data.object_id[i]) + "</b><br>";
  if (!live && !window._hyrax_export) {
    const around = [i].concat(data.map_neighbours[i]);
    near.text = title + around.map((j) => neighbourTile(data.map_thumbnail[j], data.object_id[j])).join("");
    return;
  }
  near.text = title + "<i>searching the vector index ...</i>";
  const id = data.object_id[i];
  const asked = window._hyrax_export // a static export: the object's record holds its neighbours
    ? exportRecord(id).then((record) => (record ? record.neighbours : { error: "no record of " + id }))
    : fetch(withToken("neighbours?id=" + encodeURIComponent(id))).then((r) => r.json());
  asked.then((found) => {
    near.text = found.error
      ? title + "<i>" + esc(found.error) + "</i>"
      : title + found.object_id.map((id, j) => neighbourTile(found.thumbnail[j], id)).join("");
  });
}
