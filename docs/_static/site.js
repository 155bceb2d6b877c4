/* No column of a table hides behind a sideways scroll. A table wider than the text column (site.css makes tables
   compact, and most fit) is, in this order:
   - widened into the margin where the page's table of contents sits (a laptop's screen), as the theme does for a
     "full-width" cell: the contents hide while the table is in view (class sandbox-wide);
   - else drawn stacked (a phone): one block per row, each value preceded by its column's name (class
     sandbox-stacked, site.css).
   Checked again whenever the text column changes width. Without JavaScript a wide table scrolls sideways, as the
   theme draws it. tools/docs_check.py measures the result at 1280 px and 390 px. */
(function () {
  "use strict";

  // Calls visit(cell, firstColumn) for every cell of `rows`, at the column a browser puts it (row and column spans).
  function eachCell(rows, visit) {
    const taken = [];  // taken[r]: the columns of row r already covered by a cell spanning down from above
    rows.forEach(function (row, r) {
      let column = 0;
      for (const cell of row.cells) {
        while (taken[r] && taken[r].has(column)) column++;
        visit(cell, column);
        for (let below = 1; below < cell.rowSpan; below++) {
          taken[r + below] = taken[r + below] || new Set();
          for (let c = column; c < column + cell.colSpan; c++) taken[r + below].add(c);
        }
        column += cell.colSpan;
      }
    });
  }

  // Every body cell gets data-label: the header text above its column (the header rows joined, as pandas writes a
  // table's column names in one row and its index names in the next).
  function label(table) {
    const names = [];
    eachCell(table.tHead ? Array.from(table.tHead.rows) : [], function (cell, column) {
      const text = cell.textContent.trim();
      for (let c = column; text && c < column + cell.colSpan; c++) names[c] = names[c] ? names[c] + " " + text : text;
    });
    for (const body of table.tBodies) {
      eachCell(Array.from(body.rows), function (cell, column) {
        if (names[column]) cell.setAttribute("data-label", names[column]);
      });
    }
  }

  function tooWide(table) {
    return table.getBoundingClientRect().width > table.parentElement.clientWidth + 1;
  }

  // The room to the right of the text column: the table of contents' sidebar, when it is shown beside the text.
  function margin(article) {
    const toc = document.querySelector(".bd-sidebar-secondary");
    if (!toc) return 0;
    const box = toc.getBoundingClientRect();
    const edge = article.getBoundingClientRect().right;
    return box.width > 0 && box.left >= edge - 1 && box.right <= document.documentElement.clientWidth + 1
      ? box.right - edge - 16 : 0;
  }

  const widened = new Set();
  let watcher = null;

  function fit() {
    const article = document.querySelector(".bd-article");
    if (!article) return;
    widened.clear();
    if (watcher) watcher.disconnect();
    for (const table of article.querySelectorAll("table")) {
      if (!table.tHead) continue;  // a table without a header row has no names to give its values
      const box = table.parentElement;
      table.classList.remove("sandbox-stacked");
      box.classList.remove("sandbox-wide");
      box.style.width = "";
      if (!tooWide(table)) continue;
      const extra = margin(article);
      if (extra > 0) {
        box.classList.add("sandbox-wide");
        box.style.width = box.clientWidth + extra + "px";
        if (!tooWide(table)) {
          widened.add(box);
          continue;
        }
        box.classList.remove("sandbox-wide");
        box.style.width = "";
      }
      label(table);
      table.classList.add("sandbox-stacked");
    }
    // the table of contents steps aside (the theme's "hide") while a widened table is on screen
    const toc = document.querySelector("div.bd-sidebar-secondary");
    if (toc && widened.size && "IntersectionObserver" in window) {
      const shown = new Set();
      watcher = new IntersectionObserver(function (entries) {
        for (const e of entries) (e.isIntersecting ? shown.add(e.target) : shown.delete(e.target));
        toc.classList.toggle("hide", shown.size > 0);
      });
      widened.forEach(function (box) { watcher.observe(box); });
    }
  }

  let pending = false;
  function refit() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      fit();
    });
  }

  // Fitted once the page is read, again whenever the text column changes width (the window resized, a sidebar
  // shown or hidden: a ResizeObserver, which reports after the layout), and once the fonts are in.
  function start() {
    fit();
    const article = document.querySelector(".bd-article");
    if (article && "ResizeObserver" in window) {
      let width = article.getBoundingClientRect().width;
      new ResizeObserver(function (entries) {
        const now = entries[entries.length - 1].contentRect.width;
        if (Math.abs(now - width) > 0.5) {
          width = now;
          refit();
        }
      }).observe(article);
    }
    window.addEventListener("resize", refit);
    if (document.fonts) document.fonts.ready.then(refit);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
