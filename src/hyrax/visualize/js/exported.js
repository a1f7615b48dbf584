// The exported map (hyrax-export/1, hyrax.visualize.export), served as static files: the points of the
// tiles in view come from points/{z}/{tx}/{ty}.json, an object's metadata and neighbours from
// objects/{shard}.json (shard: FNV-1a 32 of the id's UTF-8 bytes modulo the number of shards, as
// hyrax.visualize.export.shard_of), thumbnails from thumbs/. No server of ours answers.

function exportOf(json) {
  if (!window._hyrax_export || window._hyrax_export.json !== json) {
    window._hyrax_export = Object.assign(JSON.parse(json), { json: json, files: {} });
  }
  return window._hyrax_export;
}

function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

// A JSON file of the export, asked once: a promise of it, or of null when it is not there.
function exportFile(path) {
  const files = window._hyrax_export.files;
  if (!(path in files)) {
    files[path] = fetch(path)
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null);
  }
  return files[path];
}

// An object's record (row, x, y, thumbnail, columns, neighbours), or null when no object has that id.
function exportRecord(id) {
  const shard = fnv1a(String(id)) % window._hyrax_export.shards;
  return exportFile("objects/" + shard + ".json").then((records) =>
    records && Object.prototype.hasOwnProperty.call(records, id) ? records[id] : null
  );
}

// An object's row of the points' data, from its record.
function recordRow(id, record) {
  const row = Object.assign({}, record.columns);
  row.object_id = String(id);
  row.map_x = record.x;
  row.map_y = record.y;
  row.map_thumbnail = record.thumbnail;
  return row;
}

// The level whose tiles are about the viewport's size (a few files in view).
function exportLevel(exported, plot) {
  const [x0, , x1] = exported.extent;
  const ratio = (x1 - x0) / (plot.x_range.end - plot.x_range.start);
  return Math.max(0, Math.min(exported.max_level, Math.floor(Math.log2(Math.max(ratio, 1)))));
}

// Points files as the page's columns (numbers in typed arrays, as the live page's).
function mergePoints(files) {
  const data = { object_id: [], map_x: [], map_y: [], map_thumbnail: [] };
  const names = new Set();
  const coloured = files.some((f) => f && f.map_colour);
  for (const f of files) if (f) Object.keys(f.columns).forEach((n) => names.add(n));
  for (const n of names) data[n] = [];
  if (coloured) data.map_colour = [];
  let count = 0;
  for (const f of files) {
    if (!f) continue;
    data.object_id.push(...f.object_id);
    data.map_x.push(...f.x);
    data.map_y.push(...f.y);
    data.map_thumbnail.push(...f.thumbnail);
    if (coloured) data.map_colour.push(...f.map_colour);
    for (const n of names) data[n].push(...(f.columns[n] || f.object_id.map(() => null)));
    count += f.count;
  }
  for (const n of ["map_x", "map_y", ...names, ...(coloured ? ["map_colour"] : [])]) {
    if (data[n].every((v) => v === null || typeof v === "number")) {
      data[n] = Float64Array.from(data[n], (v) => (v === null ? NaN : v));
    }
  }
  return [data, count];
}

// After each pan or zoom (debounced): the points of the tiles in view at the matching level.
function followExport(plot, source, title, json) {
  const exported = exportOf(json);
  clearTimeout(window._hyrax_timer);
  window._hyrax_timer = setTimeout(() => {
    const z = exportLevel(exported, plot);
    const manifest = { extent: exported.extent, cells: 1 };
    const paths = tilesUnder(manifest, z, viewBox(plot)).map((t) => "points/" + z + "/" + t[0] + "/" + t[1] + ".json");
    Promise.all(paths.map(exportFile)).then((files) => {
      const [data, count] = mergePoints(files);
      source.selected.indices = [];
      source.data = data;
      plot.title.text = title + ": " + data.object_id.length.toLocaleString("en") + " objects drawn of " +
        count.toLocaleString("en") + " around the view (" + exported.objects.toLocaleString("en") + " in all)";
      showFound(source, false); // the object searched for, drawn or not
      window._hyrax_views = (window._hyrax_views || 0) + 1;
    });
  }, 200);
}

// Find an object by its id: the map centred on it, zoomed to its neighbourhood, the object selected.
function findObject(input, plot, source, status, json) {
  const exported = exportOf(json);
  const id = input.value.trim();
  if (!id) return Promise.resolve(null);
  status.text = "<i>looking for " + esc(id) + " ...</i>";
  return exportRecord(id).then((record) => {
    if (!record) {
      status.text = "<i>no object " + esc(id) + " in this map</i>";
      return null;
    }
    const [x0, , x1] = exported.extent;
    const half = (x1 - x0) / 2 ** (exported.max_level + 3);
    const aspect = (plot.y_range.end - plot.y_range.start) / (plot.x_range.end - plot.x_range.start);
    status.text = "<b>" + esc(id) + "</b> at (" + record.x.toFixed(3) + ", " + record.y.toFixed(3) + ")";
    // selected once the points of the new view are in (followExport), so that they do not unselect it
    window._hyrax_find = { object_id: id, x: record.x, y: record.y };
    plot.x_range.setv({ start: record.x - half, end: record.x + half });
    plot.y_range.setv({ start: record.y - half * aspect, end: record.y + half * aspect });
    return record;
  });
}
