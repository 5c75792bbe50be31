// Kluis staff console: small progressive enhancements. Every text people
// read comes from the page (data-* attributes rendered from the
// catalogue); this file holds no words.
(function () {
  "use strict";

  // The outcome of the last action (a notice such as "Recorded: the
  // document is back at the counter") is in the page when it loads, so a
  // screen reader may not announce it as a live region: it gets the focus
  // (reading it out; the next Tab goes on from there), unless the page
  // gives the focus to an element of its own (autofocus: the next
  // document to register).
  var notice = document.getElementById("notice");
  if (notice && !document.querySelector("[autofocus]") &&
      (!document.activeElement || document.activeElement === document.body)) {
    notice.focus();
  }

  // A barcode scanner types the number and presses Enter: in a form, that
  // moves on to the next field instead of sending a half-filled form. The
  // Enter's keypress (what sends a form) is stopped too, and the next field
  // gets the focus only when the key is released, after that keypress.
  var scanned = null;
  function isEnter(e) {
    return e.key === "Enter" || e.keyCode === 13;
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (isEnter(e) && t && t.matches && t.matches('input[data-scanner="next"]')) {
      e.preventDefault();
      scanned = t;
    }
  });
  document.addEventListener("keypress", function (e) {
    if (scanned && isEnter(e)) {
      e.preventDefault();
    }
  });
  document.addEventListener("keyup", function (e) {
    if (!scanned || !isEnter(e)) {
      return;
    }
    var t = scanned;
    scanned = null;
    var f = t.form;
    if (!f) {
      return;
    }
    var els = Array.prototype.filter.call(f.elements, function (el) {
      return !el.disabled && el.type !== "hidden" && el.tabIndex >= 0 && el.tagName !== "FIELDSET";
    });
    var i = els.indexOf(t);
    if (i >= 0 && i + 1 < els.length) {
      els[i + 1].focus();
    }
  });

  // Typing an address or a number chooses that way of reaching the holder.
  [["f-email", "c-email"], ["f-mobile", "c-mobile"]].forEach(function (p) {
    var input = document.getElementById(p[0]);
    var radio = document.getElementById(p[1]);
    if (input && radio) {
      input.addEventListener("input", function () {
        if (input.value !== "") {
          radio.checked = true;
        }
      });
    }
  });

  // The error summary takes the focus, so that it is read first.
  var summary = document.getElementById("errors");
  if (summary) {
    summary.focus();
  }

  document.querySelectorAll("[data-print]").forEach(function (b) {
    b.addEventListener("click", function () {
      window.print();
    });
  });

  // The fleet table: sort by a column, filter by text and status. By
  // default (sortCol -1) it keeps the server's order: what needs a
  // technician first (data-rank), then by name.
  var table = document.querySelector("table[data-sortable]");
  var sortCol = -1;
  var sortDir = 1;
  var filterInput = document.getElementById("filter");
  var showSelect = document.getElementById("show");
  var sortSelect = document.getElementById("sort");
  var shown = document.querySelector("[data-shown]");
  // The filters fold away on a phone (details/summary, closed unless a
  // filter is set) and stand open on a wider screen.
  var filterBox = document.getElementById("fleet-filters");
  if (filterBox && window.matchMedia && window.matchMedia("(min-width: 48rem)").matches) {
    filterBox.open = true;
  }

  function cellValue(row, col, numeric) {
    var c = row.children[col];
    var v = c ? c.getAttribute("data-v") || "" : "";
    return numeric ? parseFloat(v) || 0 : v.toLowerCase();
  }

  function rankValue(row) {
    return parseInt(row.getAttribute("data-rank"), 10) || 0;
  }

  function arrange() {
    if (!table) {
      return;
    }
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).filter(function (r) {
      return r.hasAttribute("data-status");
    });
    var before = rows.slice();
    var btn = sortCol < 0 ? null : table.querySelector('button[data-sort="' + sortCol + '"]');
    var numeric = btn && btn.hasAttribute("data-num");
    rows.sort(function (a, b) {
      var x = sortCol < 0 ? rankValue(a) : cellValue(a, sortCol, numeric);
      var y = sortCol < 0 ? rankValue(b) : cellValue(b, sortCol, numeric);
      if (sortCol < 0 && x === y) {
        x = cellValue(a, 0, false);
        y = cellValue(b, 0, false);
      }
      if (x < y) {
        return -sortDir;
      }
      if (x > y) {
        return sortDir;
      }
      return 0;
    });
    // Rows move only when the order changed, and the focus stays where
    // it was: moving the row of a focused link takes the focus away (it
    // went to the page, so a keyboard user could not Tab into the table:
    // arrange runs after every focus change, for the live updates).
    var moved = rows.some(function (r, i) {
      return r !== before[i];
    });
    if (moved) {
      var focused = body.contains(document.activeElement) ? document.activeElement : null;
      rows.forEach(function (r) {
        body.appendChild(r);
      });
      if (focused && document.activeElement !== focused) {
        focused.focus();
      }
    }
    table.querySelectorAll("th[aria-sort]").forEach(function (th) {
      th.removeAttribute("aria-sort");
    });
    if (btn) {
      btn.parentNode.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
    }
    var text = filterInput ? filterInput.value.trim().toLowerCase() : "";
    var show = showSelect ? showSelect.value : "all";
    var n = 0;
    rows.forEach(function (r) {
      var ok = (text === "" || (r.getAttribute("data-text") || "").toLowerCase().indexOf(text) >= 0) &&
        (show === "all" || (" " + r.getAttribute("data-status") + " ").indexOf(" " + show + " ") >= 0);
      r.hidden = !ok;
      if (ok) {
        n++;
      }
    });
    if (shown) {
      shown.textContent = shown.getAttribute("data-shown").replace("{shown}", n).replace("{total}", rows.length);
    }
  }

  if (table) {
    table.querySelectorAll("button[data-sort]").forEach(function (b) {
      b.addEventListener("click", function () {
        var col = parseInt(b.getAttribute("data-sort"), 10);
        sortDir = col === sortCol ? -sortDir : 1;
        sortCol = col;
        if (sortSelect) {
          sortSelect.value = String(col);
        }
        arrange();
      });
    });
    if (sortSelect) {
      sortSelect.addEventListener("change", function () {
        sortCol = sortSelect.value === "attention" ? -1 : parseInt(sortSelect.value, 10) || 0;
        sortDir = 1;
        arrange();
      });
    }
    if (filterInput) {
      filterInput.addEventListener("input", arrange);
    }
    if (showSelect) {
      showSelect.addEventListener("change", arrange);
    }
    arrange();
  }

  // Live pages: one stream of server-sent events; each update replaces
  // the parts it names (by element id). A part holding the keyboard focus
  // is replaced once the focus leaves it.
  var live = document.querySelector("[data-live]");
  var status = document.querySelector("[data-live-status]");
  if (live && window.EventSource) {
    var pending = {};
    var updates = 0;
    var apply = function (id) {
      var el = document.getElementById(id);
      if (!el || pending[id] === undefined) {
        return;
      }
      if (el.contains(document.activeElement) && document.activeElement !== document.body) {
        return;
      }
      if (el.innerHTML !== pending[id]) {
        el.innerHTML = pending[id];
      }
      delete pending[id];
    };
    document.addEventListener("focusout", function () {
      window.setTimeout(function () {
        Object.keys(pending).forEach(apply);
        arrange();
      }, 0);
    });
    var es = new EventSource(live.getAttribute("data-live"));
    es.addEventListener("update", function (e) {
      var parts;
      try {
        parts = JSON.parse(e.data);
      } catch (err) {
        return;
      }
      Object.keys(parts).forEach(function (id) {
        pending[id] = parts[id];
        apply(id);
      });
      // The fleet's title, with the count of alarms nobody acknowledged,
      // follows the summary (a background tab says so).
      var titled = document.querySelector("#fleet-summary [data-title]");
      if (titled) {
        document.title = titled.getAttribute("data-title");
      }
      arrange();
      updates++;
      document.body.setAttribute("data-live-updates", String(updates));
    });
    es.addEventListener("ended", function () {
      es.close();
      if (status) {
        status.textContent = status.getAttribute("data-ended");
        status.classList.add("stopped");
      }
    });
    es.addEventListener("error", function () {
      if (es.readyState === EventSource.CLOSED && status && !status.classList.contains("stopped")) {
        status.textContent = status.getAttribute("data-lost");
        status.classList.add("stopped");
      }
    });
  }
})();
