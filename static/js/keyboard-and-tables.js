// Find anything and take tables away: the header's search box, keyboard shortcuts (listed on "?"), and one sort and
// filter for every table marked data-sortable. Loaded on every page by base.html; no inline handlers (strict CSP).
(function () {
  "use strict";

  function typing(target) {
    if (!target || !target.closest) return false;
    return !!target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']");
  }

  // ---- Keyboard shortcuts -------------------------------------------------------------------------------------
  // "g" then a letter goes to a page, carrying the view (cluster, time range) as the navigation's links do.
  var PAGES = [
    ["o", "/", "Overview"],
    ["w", "/?show=workloads", "Workloads"],
    ["g", "/graph/", "Graph"],
    ["s", "/splits/", "Traffic splits"],
    ["a", "/splits/audit/", "Weight changes (audit)"],
    ["p", "/policies/", "Access policies"],
    ["m", "/mesh/", "Mesh"],
    ["h", "/history/", "Configuration history"],
  ];
  var OTHERS = [
    ["/", "Focus the search box"],
    ["?", "Show this list"],
    ["Esc", "Close this list, or clear the search results"],
  ];

  function go(path) {
    var view = document.body.dataset.viewQuery;
    if (view) path += (path.indexOf("?") < 0 ? "?" : "&") + view;
    window.location.assign(path);
  }

  function keyRow(keys, what) {
    var row = document.createElement("tr");
    var k = document.createElement("td");
    keys.forEach(function (key, i) {
      if (i) k.appendChild(document.createTextNode(" then "));
      var kbd = document.createElement("kbd");
      kbd.textContent = key;
      k.appendChild(kbd);
    });
    var w = document.createElement("td");
    w.textContent = what;
    row.appendChild(k);
    row.appendChild(w);
    return row;
  }

  var dialog = null;
  function shortcutsDialog() {
    if (dialog) return dialog;
    dialog = document.createElement("dialog");
    dialog.id = "shortcuts";
    dialog.setAttribute("aria-labelledby", "shortcuts-title");
    var title = document.createElement("h2");
    title.id = "shortcuts-title";
    title.textContent = "Keyboard shortcuts";
    var table = document.createElement("table");
    table.className = "shortcuts";
    var head = document.createElement("thead"), headRow = document.createElement("tr");
    ["Keys", "What they do"].forEach(function (text) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = text;
      headRow.appendChild(th);
    });
    head.appendChild(headRow);
    var body = document.createElement("tbody");
    OTHERS.forEach(function (o) { body.appendChild(keyRow([o[0]], o[1])); });
    PAGES.forEach(function (p) { body.appendChild(keyRow(["g", p[0]], "Go to " + p[2])); });
    table.appendChild(head);
    table.appendChild(body);
    var note = document.createElement("p");
    note.className = "help";
    note.textContent = "Shortcuts are ignored while you type in a field. On the graph, the arrow keys move between nodes.";
    var form = document.createElement("form");
    form.method = "dialog";
    var close = document.createElement("button");
    close.textContent = "Close";
    form.appendChild(close);
    dialog.appendChild(title);
    dialog.appendChild(table);
    dialog.appendChild(note);
    dialog.appendChild(form);
    document.body.appendChild(dialog);
    return dialog;
  }

  var pendingG = 0; // time of a "g" waiting for its letter
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") {
      var hits = document.getElementById("search-hits"), active = document.activeElement;
      if (hits && hits.firstChild && active && active.closest && active.closest(".search-box")) {
        hits.textContent = "";
        document.getElementById("global-search").focus();
      }
      return;
    }
    if (typing(event.target) || (dialog && dialog.open)) return;
    if (event.key === "/") {
      var box = document.getElementById("global-search");
      if (!box) return;
      event.preventDefault();
      box.focus();
      box.select();
      return;
    }
    if (event.key === "?") {
      event.preventDefault();
      shortcutsDialog().showModal();
      return;
    }
    if (pendingG && Date.now() - pendingG < 1500) {
      pendingG = 0;
      for (var i = 0; i < PAGES.length; i++) {
        if (PAGES[i][0] === event.key) { event.preventDefault(); go(PAGES[i][1]); return; }
      }
      return;
    }
    // The graph uses its own keys while it has the focus; "g" elsewhere starts a "go to".
    if (event.key === "g" && !(event.target.closest && event.target.closest("#cy"))) {
      pendingG = Date.now();
    }
  });

  // The search box's results: Down from the box or a result goes to the next result, Up to the one before (or back
  // to the box); leaving the box and its results closes them.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    var box = document.getElementById("global-search"), hits = document.getElementById("search-hits");
    if (!box || !hits || (event.target !== box && !hits.contains(event.target))) return;
    var links = Array.prototype.slice.call(hits.querySelectorAll("a"));
    if (!links.length) return;
    var at = links.indexOf(event.target), next = event.key === "ArrowDown" ? at + 1 : at - 1;
    event.preventDefault();
    if (next < 0) box.focus();
    else links[Math.min(next, links.length - 1)].focus();
  });
  document.addEventListener("focusout", function (event) {
    var form = event.target.closest && event.target.closest(".search-box");
    if (!form || (event.relatedTarget && form.contains(event.relatedTarget))) return;
    var hits = document.getElementById("search-hits");
    if (hits) hits.textContent = "";
  });

  // ---- Sortable, filterable tables ----------------------------------------------------------------------------
  // <table data-sortable="name">: each header with text sorts its column (numbers as numbers, a cell's
  // data-sort-value first), aria-sort says which; a filter field above the table hides the rows without the text.
  // Tables inside self-refreshing widgets are replaced every poll: the sort and filter are kept by table name.
  var kept = {};
  var NUMBER = /^[-+]?(\d+(\.\d+)?|\.\d+)/;

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    return cell.dataset.sortValue !== undefined ? cell.dataset.sortValue : cell.textContent.trim();
  }
  function compare(a, b) {
    var x = a.replace(/,/g, "").match(NUMBER), y = b.replace(/,/g, "").match(NUMBER);
    if (x && y) return parseFloat(x[0]) - parseFloat(y[0]);
    if (x) return -1;
    if (y) return 1;
    return a.localeCompare(b, undefined, { sensitivity: "base", numeric: true });
  }
  function bodyRows(table) {
    var rows = [];
    Array.prototype.forEach.call(table.tBodies, function (tbody) {
      Array.prototype.forEach.call(tbody.rows, function (row) { rows.push(row); });
    });
    // The "nothing here" row spans the table: it neither sorts nor filters.
    return rows.filter(function (row) { return !(row.cells.length === 1 && row.cells[0].colSpan > 1); });
  }
  function keyOf(table) {
    var same = document.querySelectorAll("table[data-sortable='" + CSS.escape(table.dataset.sortable) + "']");
    return table.dataset.sortable + "#" + Array.prototype.indexOf.call(same, table);
  }
  function sortBy(table, index, direction) {
    var rows = bodyRows(table);
    if (!rows.length) return;
    var tbody = rows[0].parentNode;
    var sign = direction === "descending" ? -1 : 1;
    rows
      .map(function (row, i) { return { row: row, value: cellValue(row, index), i: i }; })
      .sort(function (a, b) { return sign * compare(a.value, b.value) || a.i - b.i; })
      .forEach(function (r) { tbody.appendChild(r.row); });
    headers(table).forEach(function (th, i) {
      if (i === index) th.setAttribute("aria-sort", direction);
      else th.removeAttribute("aria-sort");
    });
  }
  function filterRows(table, text, status) {
    var needle = text.trim().toLowerCase();
    var rows = bodyRows(table), shown = 0;
    rows.forEach(function (row) {
      var match = !needle || row.textContent.toLowerCase().indexOf(needle) >= 0;
      row.hidden = !match;
      if (match) shown += 1;
    });
    status.textContent = needle ? shown + " of " + rows.length + " rows" : "";
  }
  function headers(table) {
    var head = table.tHead;
    if (!head || !head.rows.length) return [];
    return Array.prototype.slice.call(head.rows[head.rows.length - 1].cells);
  }
  function enhance(table) {
    if (table.dataset.sortableReady) return;
    table.dataset.sortableReady = "1";
    var key = keyOf(table), state = kept[key] || (kept[key] = { index: -1, direction: "", filter: "" });
    headers(table).forEach(function (th, index) {
      var label = th.textContent.trim();
      if (!label || th.querySelector("a, button")) return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.title = "Sort by " + label;
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () {
        state.direction = state.index === index && state.direction === "ascending" ? "descending" : "ascending";
        state.index = index;
        sortBy(table, index, state.direction);
      });
    });
    var box = document.createElement("div");
    box.className = "table-filter";
    var label = document.createElement("label");
    label.textContent = "Filter rows ";
    var input = document.createElement("input");
    input.type = "search";
    input.setAttribute("data-table-filter", table.dataset.sortable);
    input.dataset.tableKey = key;
    input.autocomplete = "off";
    input.value = state.filter;
    label.appendChild(input);
    var status = document.createElement("span");
    status.className = "filter-count";
    status.setAttribute("aria-live", "polite");
    box.appendChild(label);
    box.appendChild(status);
    var before = table.previousElementSibling;
    if (before && before.classList.contains("table-filter")) before.remove(); // the table alone was swapped
    table.parentNode.insertBefore(box, table);
    input.addEventListener("input", function () {
      state.filter = input.value;
      filterRows(table, input.value, status);
    });
    if (state.index >= 0) sortBy(table, state.index, state.direction);
    if (state.filter) filterRows(table, state.filter, status);
  }
  function enhanceAll(root) {
    (root || document).querySelectorAll("table[data-sortable]").forEach(enhance);
  }
  document.addEventListener("DOMContentLoaded", function () { enhanceAll(document); });
  // A refresh that replaces a table while its filter is being typed in gives the focus back to the new field.
  var refocus = null;
  document.addEventListener("htmx:beforeSwap", function () {
    var active = document.activeElement;
    refocus = active && active.dataset && active.dataset.tableKey
      ? { key: active.dataset.tableKey, start: active.selectionStart, end: active.selectionEnd } : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    enhanceAll(document);
    if (!refocus) return;
    var again = document.querySelector("input[data-table-key='" + CSS.escape(refocus.key) + "']");
    if (again && again !== document.activeElement) {
      again.focus();
      again.setSelectionRange(refocus.start, refocus.end);
    }
    refocus = null;
  });
})();
