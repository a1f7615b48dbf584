// Live page: re-rank every object from the labels (the server trains the relevance model) and show the
// top of the ranking and the objects whose labels would teach it the most, each with label buttons.
function rankTile(entry, score) {
  const mark = entry.label === 1 ? " &#9733;" : entry.label === 0 ? " &#215;" : "";
  return (
    '<figure style="display:inline-block;margin:2px;text-align:center"><img class="hyrax-ranked" src="' +
    esc(entry.thumbnail) + '" width="64" height="64"><figcaption style="font-size:9px">' + esc(entry.object_id) +
    mark + "<br>" + score.toFixed(3) + labelButtons(entry.object_id) + "</figcaption></figure>"
  );
}

function showRanking(answer) {
  const top = answer.top.map((e) => rankTile(e, e.combined)).join("");
  const next = answer.suggest.map((e) => rankTile(e, e.acquisition)).join("");
  return (
    "<b>Ranking</b> (relevance from " + answer.labelled + " labels x outlier score)<br>" + top +
    "<br><b>Label these next</b> (they teach the ranking the most)<br>" + next
  );
}

function rerank(grid) {
  window.hyraxLabel = hyraxLabel;
  grid.text = "<i>ranking every object ...</i>";
  postJSON("rank", {}).then((answer) => {
    grid.text = answer.error ? "<i>" + esc(answer.error) + "</i>" : showRanking(answer);
    window._hyrax_ranked = (window._hyrax_ranked || 0) + 1;
  });
}
