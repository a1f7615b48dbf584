// data.map_px, data.map_py = the 3-D points data.map_x, data.map_y, data.map_z turned by az degrees about
// z and seen from el degrees of elevation (the same formula as hyrax.visualize.mapdata.project). The map's
// own columns are namespaced (map_*), so that a catalog's columns (a redshift z) keep their names.
function project(data, az, el) {
  const n = data.map_x.length;
  const a = (az * Math.PI) / 180;
  const e = (el * Math.PI) / 180;
  const centre = [data.map_x, data.map_y, data.map_z].map((c) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += c[i];
    return n ? s / n : 0;
  });
  const px = new Float32Array(n);
  const py = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const X = data.map_x[i] - centre[0];
    const Y = data.map_y[i] - centre[1];
    const Z = data.map_z[i] - centre[2];
    const u = X * Math.cos(a) + Y * Math.sin(a);
    const v = -X * Math.sin(a) + Y * Math.cos(a);
    px[i] = u;
    py[i] = Z * Math.cos(e) - v * Math.sin(e);
  }
  data.map_px = px;
  data.map_py = py;
}
