// data.px, data.py = the 3-D points data.x, data.y, data.z turned by az degrees about z and seen from el
// degrees of elevation (the same formula as hyrax.visualize.mapdata.project).
function project(data, az, el) {
  const n = data.x.length;
  const a = (az * Math.PI) / 180;
  const e = (el * Math.PI) / 180;
  const centre = [data.x, data.y, data.z].map((c) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += c[i];
    return n ? s / n : 0;
  });
  const px = new Float32Array(n);
  const py = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const X = data.x[i] - centre[0];
    const Y = data.y[i] - centre[1];
    const Z = data.z[i] - centre[2];
    const u = X * Math.cos(a) + Y * Math.sin(a);
    const v = -X * Math.sin(a) + Y * Math.cos(a);
    px[i] = u;
    py[i] = Z * Math.cos(e) - v * Math.sin(e);
  }
  data.px = px;
  data.py = py;
}
