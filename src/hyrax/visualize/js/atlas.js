// The atlas (hyrax-atlas/1, hyrax.visualize.atlas): the map tiled with the objects' own images, read from
// the live server, an export's folder, or (the standalone file) its coarser levels embedded. As the
// page zooms in, it goes from the density view (the whole map: a density of every object and a sample of
// points) through the atlas's levels (the tiles of the level whose thumbnails are at least
// ATLAS_MIN_PX wide on screen, instead of dots) down to single objects (past the deepest level: each
// object's own thumbnail at its place). Clicking a thumbnail shows its object as clicking a point does:
// it becomes the selection (table, images, neighbours, labels).

// A level is drawn once its thumbnails are at least this many pixels wide; coarser: the density view.
const ATLAS_MIN_PX = 48;
// Past the deepest level, once its thumbnails would be wider than this: single objects.
const ATLAS_OBJECTS_PX = 128;
// Single objects are drawn this many pixels wide, when at most ATLAS_MOST_OBJECTS are in view.
const OBJECT_PX = 56;
const ATLAS_MOST_OBJECTS = 400;

// The page's atlas: the manifest and the folder's address, parsed once (the callbacks carry it as JSON).
function atlasOf(json) {
  if (!json) return null;
  if (!window._hyrax_atlas || window._hyrax_atlas.json !== json) {
    const atlas = JSON.parse(json);
    // embedded: the standalone file's levels (file paths -> cells JSON or image data URIs)
    const embedded = atlas.embedded || null;
    window._hyrax_atlas = { json: json, manifest: atlas.manifest, base: atlas.base, files: {}, embedded: embedded };
  }
  return window._hyrax_atlas;
}

// A file of the atlas folder (JSON), asked once: a promise of it, or of null when it is not there.
function atlasFile(atlas, path) {
  if (!(path in atlas.files) && atlas.embedded) {
    atlas.files[path] = Promise.resolve(path in atlas.embedded ? atlas.embedded[path] : null);
  }
  if (!(path in atlas.files)) {
    atlas.files[path] = fetch(withToken(atlas.base + path))
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null);
  }
  return atlas.files[path];
}

// The plot's drawing area in pixels: its frame as laid out, or (before the first layout) its size less
// the axes' room.
function framePixels(plot) {
  try {
    return [plot.inner_width, plot.inner_height];
  } catch (unset) {
    return [plot.width - 60, plot.height - 60];
  }
}

// Width on screen (pixels) of a cell of level z.
function atlasCellPx(manifest, plot, z) {
  const [x0, , x1] = manifest.extent;
  const units = (x1 - x0) / (2 ** z * manifest.cells);
  return (units * framePixels(plot)[0]) / (plot.x_range.end - plot.x_range.start);
}

// The level to draw for the plot's viewport: -1 for the density view, max_level + 1 for single objects.
function atlasLevel(manifest, plot) {
  if (atlasCellPx(manifest, plot, 0) < ATLAS_MIN_PX) return -1;
  let z = 0;
  while (z < manifest.max_level && atlasCellPx(manifest, plot, z + 1) >= ATLAS_MIN_PX) z++;
  if (z === manifest.max_level && atlasCellPx(manifest, plot, z) > ATLAS_OBJECTS_PX) return z + 1;
  return z;
}

// The tiles [tx, ty] of level z under a box [x0, x1] x [y0, y1] of the map (tx from the left, ty from
// the top of the atlas's square).
function tilesUnder(manifest, z, box) {
  const [x0, , x1, y1] = manifest.extent;
  const n = 2 ** z;
  const size = (x1 - x0) / n;
  const clamp = (v) => Math.max(0, Math.min(n - 1, v));
  const found = [];
  const [ta, tb] = [clamp(Math.floor((box[0] - x0) / size)), clamp(Math.floor((box[1] - x0) / size))];
  const [tc, td] = [clamp(Math.floor((y1 - box[3]) / size)), clamp(Math.floor((y1 - box[2]) / size))];
  for (let tx = ta; tx <= tb; tx++) for (let ty = tc; ty <= td; ty++) found.push([tx, ty]);
  return found;
}

function viewBox(plot) {
  return [plot.x_range.start, plot.x_range.end, plot.y_range.start, plot.y_range.end];
}

// Draw what the viewport asks for: the density and dots, a level's tiles, or single objects.
function followAtlas(plot, json, tiles, objects, source, renderers) {
  const atlas = atlasOf(json);
  if (!atlas) return;
  const manifest = atlas.manifest;
  const z = atlasLevel(manifest, plot);
  const drawing = z >= 0 && z <= manifest.max_level;
  window._hyrax_atlas_level = z;
  for (const renderer of renderers.points) renderer.glyph.fill_alpha = drawing ? 0 : 0.8;
  for (const renderer of renderers.points) renderer.nonselection_glyph.fill_alpha = drawing ? 0 : 0.25;
  for (const renderer of renderers.density) renderer.visible = z < 0;
  drawObjects(plot, objects, source, z > manifest.max_level);
  if (!drawing) {
    tiles.data = { url: [], x: [], y: [], w: [], h: [], z: [], tx: [], ty: [] };
    window._hyrax_tiles_drawn = (window._hyrax_tiles_drawn || 0) + 1;
    return;
  }
  const level = String(z) + "/";
  atlasFile(atlas, level + "tiles.json").then((listed) => {
    if (window._hyrax_atlas_level !== z) return; // the page zoomed on meanwhile
    const exists = new Set((listed ? listed.tiles : []).map((t) => t[0] + "/" + t[1]));
    const [x0, , x1, y1] = manifest.extent;
    const size = (x1 - x0) / 2 ** z;
    const out = { url: [], x: [], y: [], w: [], h: [], z: [], tx: [], ty: [] };
    for (const [tx, ty] of tilesUnder(manifest, z, viewBox(plot))) {
      if (!exists.has(tx + "/" + ty)) continue;
      const name = level + tx + "/" + ty + "." + manifest.image_format;
      out.url.push(atlas.embedded ? atlas.embedded[name] : withToken(atlas.base + name));
      out.x.push(x0 + tx * size);
      out.y.push(y1 - (ty + 1) * size);
      out.w.push(size);
      out.h.push(size);
      out.z.push(z);
      out.tx.push(tx);
      out.ty.push(ty);
    }
    tiles.data = out;
    window._hyrax_tiles_drawn = (window._hyrax_tiles_drawn || 0) + 1;
  });
}

// Single objects: each drawn point's own thumbnail in view, centred on it (when few enough are drawn).
function drawObjects(plot, objects, source, show) {
  const out = { url: [], x: [], y: [], w: [], h: [] };
  const data = source.data;
  if (show && data.object_id && data.object_id.length <= ATLAS_MOST_OBJECTS) {
    const [width, height] = framePixels(plot);
    const units = (OBJECT_PX * (plot.x_range.end - plot.x_range.start)) / width;
    const unitsY = (OBJECT_PX * (plot.y_range.end - plot.y_range.start)) / height;
    const [x0, x1, y0, y1] = viewBox(plot);
    for (let i = 0; i < data.object_id.length; i++) {
      const [x, y] = [data.map_x[i], data.map_y[i]];
      if (x < x0 - units || x > x1 + units || y < y0 - unitsY || y > y1 + unitsY) continue; // not in view
      out.url.push(data.map_thumbnail[i]);
      out.x.push(data.map_x[i]);
      out.y.push(data.map_y[i]);
      out.w.push(units);
      out.h.push(unitsY);
    }
  }
  objects.data = out;
}

// The object whose thumbnail is drawn at map position (x, y) at level z: a promise of
// {object_id, x, y} from its tile's cells, or null over an empty cell.
function atlasObjectAt(atlas, z, x, y) {
  const manifest = atlas.manifest;
  const [x0, , x1, y1] = manifest.extent;
  const n = 2 ** z * manifest.cells;
  const c = (x1 - x0) / n;
  const gx = Math.min(Math.floor((x - x0) / c), n - 1);
  const gy = Math.min(Math.floor((y1 - y) / c), n - 1);
  if (gx < 0 || gy < 0) return Promise.resolve(null);
  const [tx, ty] = [Math.floor(gx / manifest.cells), Math.floor(gy / manifest.cells)];
  const [col, row] = [gx % manifest.cells, gy % manifest.cells];
  return atlasFile(atlas, z + "/" + tx + "/" + ty + ".json").then((cells) => {
    if (!cells) return null;
    for (let i = 0; i < cells.col.length; i++) {
      if (cells.col[i] === col && cells.row[i] === row) {
        return { object_id: cells.object_id[i], x: cells.x[i], y: cells.y[i] };
      }
    }
    return null;
  });
}

// A click on the map while a level is drawn: the object of the thumbnail under it becomes the selection.
function atlasTap(event, plot, json, source, live) {
  const atlas = atlasOf(json);
  if (!atlas) return;
  const z = window._hyrax_atlas_level;
  if (z === undefined || z < 0 || z > atlas.manifest.max_level) return;
  atlasObjectAt(atlas, z, event.x, event.y).then((found) => {
    if (found) showObject(found, source, live);
  });
}

// A column of the points' data with one more value (typed arrays stay typed).
function withValue(column, value) {
  if (ArrayBuffer.isView(column)) {
    const grown = new column.constructor(column.length + 1);
    grown.set(column);
    grown[column.length] = value === null || value === undefined ? NaN : value;
    return grown;
  }
  return Array.from(column).concat([value === undefined ? "" : value]);
}

// The object a find box asked for (window._hyrax_find), once the new view's points are in: selected in
// the next task, as the selection's table emptied and refilled in one task keeps showing its old row.
function showFound(source, live) {
  const wanted = window._hyrax_find;
  window._hyrax_find = null;
  if (wanted) setTimeout(() => showObject(wanted, source, live), 0);
}

// Select an object ({object_id, x, y}), adding it to the drawn points when it is not among them: the
// table, the image grid, its neighbours and the label buttons then work as for a clicked point.
function showObject(found, source, live) {
  const present = Array.from(source.data.object_id).indexOf(String(found.object_id));
  if (present >= 0) {
    source.selected.indices = [present];
    window._hyrax_shown = found.object_id;
    return Promise.resolve(present);
  }
  return objectRow(found, live).then((row) => {
    const data = {};
    for (const [name, column] of Object.entries(source.data)) data[name] = withValue(column, row[name]);
    source.data = data;
    source.selected.indices = [data.object_id.length - 1];
    window._hyrax_shown = found.object_id;
    return data.object_id.length - 1;
  });
}

// One object's row of the points' data: from the export's object records, or from the live server (the
// objects at its position: exact points in a tiny box); the standalone file has no one to ask: the
// object's id and place (its metadata, image and neighbours are in the file for the objects it draws).
function objectRow(found, live) {
  if (window._hyrax_export) {
    return exportRecord(found.object_id).then((record) => recordRow(found.object_id, record));
  }
  if (!live) {
    return Promise.resolve({ object_id: String(found.object_id), map_x: found.x, map_y: found.y, map_neighbours: [] });
  }
  const e = 1e-6 * (1 + Math.abs(found.x) + Math.abs(found.y));
  const q = new URLSearchParams({ x0: found.x - e, x1: found.x + e, y0: found.y - e, y1: found.y + e });
  return fetch(withToken("view?" + q))
    .then((r) => r.json())
    .then((view) => {
      const data = decodeColumns(view);
      const i = data.object_id.map(String).indexOf(String(found.object_id));
      const row = {};
      for (const [name, column] of Object.entries(data)) row[name] = column[i];
      row.map_thumbnail = withToken("thumb?id=" + encodeURIComponent(found.object_id));
      return row;
    });
}
