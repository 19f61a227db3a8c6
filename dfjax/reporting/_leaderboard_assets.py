"""The leaderboard's inline CSS and JavaScript (no CDN: the pages open from disk).

SORT_AND_FILTER_JS makes every `table.board` sortable by a click on a header (numeric
columns by the number in each cell's `data-v`, cells without one last in either
direction) and filters every board's rows by the text typed into `#filter`.
"""

STYLE_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1a1a1a; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f0f0f0; }
table.board th { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.text, th.text { text-align: left; }
td small, p small { color: #555; }
.warning { background: #fff3cd; border: 1px solid #e0c36c; padding: 0.5em 0.8em; }
.unreliable { color: #a15c00; font-weight: bold; }
.failed { color: #b00020; font-weight: bold; }
.nonadaptive { color: #b00020; font-weight: bold; }
.mark { display: inline-block; border-radius: 3px; padding: 0 4px; margin-left: 4px;
        font-size: 0.8em; background: #eee; }
.mark-failed { background: #f8d7da; } .mark-transfer { background: #d6e4ff; }
pre.error { background: #f8f8f8; border: 1px solid #ddd; padding: 0.5em; white-space: pre-wrap; }
figure { display: inline-block; margin: 0.5em; }
figure img { max-width: 100%; }
.gallery td { text-align: center; }
.gallery img { width: 128px; image-rendering: pixelated; }
#filter { font-size: 1em; padding: 4px; width: 24em; }
"""

SORT_AND_FILTER_JS = """
(function () {
  'use strict';
  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.getAttribute('data-v');
    if (raw === null || raw === '') { return null; }
    return numeric ? parseFloat(raw) : raw.toLowerCase();
  }
  function sortBy(table, header) {
    var index = header.cellIndex;
    var numeric = header.getAttribute('data-type') === 'num';
    var ascending = header.getAttribute('aria-sort') !== 'ascending';
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      var order = x < y ? -1 : (x > y ? 1 : 0);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.removeAttribute('aria-sort');
    });
    header.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
  }
  function applyFilter(text) {
    var query = text.trim().toLowerCase();
    Array.prototype.forEach.call(document.querySelectorAll('table.board'), function (table) {
      var shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var match = query === '' || row.textContent.toLowerCase().indexOf(query) !== -1;
        row.hidden = !match;
        if (match) { shown += 1; }
      });
      var counter = document.getElementById(table.id + '-count');
      if (counter) { counter.textContent = shown + ' of ' + table.tBodies[0].rows.length; }
    });
  }
  document.addEventListener('DOMContentLoaded', function () {
    Array.prototype.forEach.call(document.querySelectorAll('table.board'), function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
        th.addEventListener('click', function () { sortBy(table, th); });
      });
    });
    var input = document.getElementById('filter');
    if (input) {
      input.addEventListener('input', function () { applyFilter(input.value); });
    }
  });
})();
"""
