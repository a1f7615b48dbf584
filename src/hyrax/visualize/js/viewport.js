// Live page: after each pan or zoom (debounced), fetch the viewport's points and density.
// Numeric columns come as base64 little-endian bytes (see hyrax.visualize.live._binary). The map's own
// columns are namespaced (map_x, map_y, map_z, map_colour), the catalog's keep their names.
function decodeColumns(view) {
  const data = view.points;
  for (const [name, column] of Object.entries(view.arrays)) {
    const bytes = Uint8Array.from(atob(column.data), (c) => c.charCodeAt(0));
    data[name] = column.dtype === "float32" ? new Float32Array(bytes.buffer) : new Float64Array(bytes.buffer);
  }
  return data;
}

function viewTitle(title, view) {
  const drawn = view.drawn;
  return (
    title + ": " + drawn.toLocaleString("en") + " of " + view.in_view.toLocaleString("en") +
    " objects in view (" + view.total.toLocaleString("en") + " in all)" +
    (drawn < view.in_view ? " (density of all; points: a sample)" : "")
  );
}

function followViewport(plot, source, densities, title, angles) {
  clearTimeout(window._hyrax_timer);
  window._hyrax_timer = setTimeout(() => {
    const q = new URLSearchParams({
      x0: plot.x_range.start, x1: plot.x_range.end, y0: plot.y_range.start, y1: plot.y_range.end,
    });
    fetch(withToken("view?" + q))
      .then((r) => r.json())
      .then((view) => {
        if (view.error) {
          return;
        }
        const data = decodeColumns(view);
        data.map_thumbnail = data.object_id.map((id) => withToken("thumb?id=" + encodeURIComponent(id)));
        if (data.map_z) {
          project(data, angles[0].value, angles[1].value);
        }
        source.selected.indices = [];
        source.data = data;
        densities.data = view.density;
        plot.title.text = viewTitle(title, view);
        showFound(source, true); // the object of the find box, drawn or not
        window._hyrax_views = (window._hyrax_views || 0) + 1;
      });
  }, 200);
}

// The find box of the live page: the server says where the object is (find?id=); the map is centred on
// it and zoomed in, and the object selected once the new view's points are in (followViewport).
function findLive(input, plot, source, status) {
  const id = input.value.trim();
  if (!id) return Promise.resolve(null);
  status.text = "<i>looking for " + esc(id) + " ...</i>";
  return fetch(withToken("find?id=" + encodeURIComponent(id)))
    .then((r) => r.json())
    .then((found) => {
      if (found.error) {
        status.text = "<i>" + esc(found.error) + "</i>";
        return null;
      }
      status.text = "<b>" + esc(id) + "</b> at (" + found.x.toFixed(3) + ", " + found.y.toFixed(3) + ")";
      const half = found.width / 2;
      const aspect = (plot.y_range.end - plot.y_range.start) / (plot.x_range.end - plot.x_range.start);
      const x = [found.x - half, found.x + half];
      const y = [found.y - half * aspect, found.y + half * aspect];
      if (x[0] === plot.x_range.start && x[1] === plot.x_range.end && y[0] === plot.y_range.start && y[1] === plot.y_range.end) {
        showObject(found, source, true); // already in that view: no new points will come
        return found;
      }
      window._hyrax_find = found;
      plot.x_range.setv({ start: x[0], end: x[1] });
      plot.y_range.setv({ start: y[0], end: y[1] });
      return found;
    });
}
