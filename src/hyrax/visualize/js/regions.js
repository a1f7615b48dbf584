// Live page: a box or lasso on the 2-D map selects, in Python, every object inside it (drawn or not).
// Bokeh reports the region after it selected the drawn points, so this request comes last.
function selectRegion(event, inside) {
  const g = event.geometry;
  if (!event.final || (g.type !== "rect" && g.type !== "poly")) {
    return;
  }
  const geometry =
    g.type === "rect"
      ? { type: "rect", x0: g.x0, x1: g.x1, y0: g.y0, y1: g.y1 }
      : { type: "poly", x: Array.from(g.x), y: Array.from(g.y) };
  postSelection({ geometry: geometry, seq: nextSequence() }).then((answer) => {
    if (answer.error) {
      inside.text = "<i>" + esc(answer.error) + "</i>";
      return;
    }
    inside.text =
      "<b>" + answer.selected.toLocaleString("en") + " objects inside the selection</b> " +
      "(all of them, drawn or not: <code>view.selected()</code> in Python)";
    window._hyrax_region = answer.selected;
  });
}
