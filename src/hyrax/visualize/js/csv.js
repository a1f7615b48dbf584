// The selection as CSV (RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled).
function csvField(value) {
  const s = String(value);
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function csvText(data, names) {
  const lines = [names.map(csvField).join(",")];
  for (let r = 0; r < data.object_id.length; r++) {
    lines.push(names.map((n) => csvField(data[n][r])).join(","));
  }
  return lines.join("\n");
}

function downloadText(text, filename) {
  const blob = new Blob([text], { type: "text/csv" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  link.click();
}

function downloadCSV(data, names, filename) {
  downloadText(csvText(data, names), filename);
}
