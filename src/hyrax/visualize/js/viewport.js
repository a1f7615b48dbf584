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
        window._hyrax_views = (window._hyrax_views || 0) + 1;
      });
  }, 200);
}
