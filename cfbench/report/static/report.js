(function () {
  "use strict";
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v === null || v === "") return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function compare(a, b) {
    if (a === null && b === null) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    if (typeof a !== typeof b) return typeof a === "number" ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  var live = document.getElementById("sort-status");
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.tHead.rows[0].cells;
    var body = table.tBodies[0];
    Array.prototype.forEach.call(body.rows, function (r, i) { r.setAttribute("data-i", i); });
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = th.querySelector("button");
      if (!button) return;
      th.setAttribute("aria-sort", "none");
      button.addEventListener("click", function () {
        var first = th.getAttribute("data-first") || "ascending";
        var now = th.getAttribute("aria-sort");
        var dir = now === first ? (first === "ascending" ? "descending" : "ascending") : first;
        Array.prototype.forEach.call(heads, function (o) {
          if (o.hasAttribute("aria-sort")) o.setAttribute("aria-sort", "none");
        });
        th.setAttribute("aria-sort", dir);
        var sign = dir === "ascending" ? 1 : -1;
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var ka = key(a.cells[col]), kb = key(b.cells[col]);
          if (ka === null || kb === null) {
            var c0 = compare(ka, kb);
            if (c0 !== 0) return c0;
          }
          var c = sign * compare(ka, kb);
          return c !== 0 ? c : Number(a.getAttribute("data-i")) - Number(b.getAttribute("data-i"));
        });
        rows.forEach(function (r) { body.appendChild(r); });
        if (live) live.textContent = (table.caption ? table.caption.textContent.split(".")[0] : "") +
          ": sorted by " + button.textContent + ", " + dir + ".";
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('script[type="application/json"]'),
    function (s) { JSON.parse(s.textContent); });
})();
