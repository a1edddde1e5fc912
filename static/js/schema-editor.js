// The project page's schema tables (issue 20): add, remove and reorder rows in the page. The server
// reads each column in document order, so moving a row moves all its cells together. Without this
// script the page still works: the server renders empty rows to fill in, and an emptied name drops
// its row.
(function () {
  "use strict";
  const form = document.querySelector("[data-testid=schema-form]");
  if (!form) return;
  const palette = (form.dataset.palette || "").split(" ").filter(Boolean);

  function rowsOf(table) {
    return Array.from(table.tBodies[0].rows);
  }

  // Labels read "Colour 3" and so on: keep the numbers in step with the rows' order.
  function renumber(table) {
    rowsOf(table).forEach(function (row, index) {
      row.querySelectorAll("[aria-label]").forEach(function (control) {
        const label = control.getAttribute("aria-label");
        if (/ \d+$/.test(label)) control.setAttribute("aria-label", label.replace(/ \d+$/, " " + (index + 1)));
      });
      const up = row.querySelector("[data-row-action=up]");
      const down = row.querySelector("[data-row-action=down]");
      if (up) up.disabled = index === 0;
      if (down) down.disabled = index === rowsOf(table).length - 1;
    });
  }

  // The first palette colour that no label row has yet; past the palette, a hue by the golden angle.
  function unusedColour() {
    const taken = new Set(
      Array.from(form.querySelectorAll("input[name=entity_color]")).map(function (input) {
        return input.value.toLowerCase();
      })
    );
    for (const colour of palette) if (!taken.has(colour)) return colour;
    for (let step = 0; ; step += 1) {
      const hue = ((0.61803398875 * (taken.size + step)) % 1) * 360;
      const colour = hslToHex(hue, 65, 45);
      if (!taken.has(colour)) return colour;
    }
  }

  function hslToHex(h, s, l) {
    s /= 100;
    l /= 100;
    const k = function (n) { return (n + h / 30) % 12; };
    const a = s * Math.min(l, 1 - l);
    const f = function (n) {
      const value = l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
      return Math.round(255 * value).toString(16).padStart(2, "0");
    };
    return "#" + f(0) + f(8) + f(4);
  }

  function addRow(kind) {
    const table = form.querySelector("table[data-rows=" + kind + "]");
    const template = form.querySelector("template[data-row-template=" + kind + "]");
    const row = template.content.firstElementChild.cloneNode(true);
    row.dataset.testid = template.dataset.rowTestid;
    showTools(row);
    table.tBodies[0].appendChild(row);
    const colour = row.querySelector("input[name=entity_color]");
    if (colour) colour.value = unusedColour();
    renumber(table);
    const first = row.querySelector("input, select");
    if (first) first.focus();
  }

  function showTools(scope) {
    scope.querySelectorAll(".row-buttons").forEach(function (tools) { tools.hidden = false; });
  }

  form.addEventListener("click", function (event) {
    const adder = event.target.closest("[data-add-row]");
    if (adder) {
      addRow(adder.dataset.addRow);
      return;
    }
    const button = event.target.closest("[data-row-action]");
    if (!button) return;
    const row = button.closest("tr");
    const table = row.closest("table");
    const action = button.dataset.rowAction;
    if (action === "up" && row.previousElementSibling) {
      row.parentNode.insertBefore(row, row.previousElementSibling);
    } else if (action === "down" && row.nextElementSibling) {
      row.parentNode.insertBefore(row.nextElementSibling, row);
    } else if (action === "remove") {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      const focus = next && next.querySelector("[data-row-action=remove]");
      (focus || table.closest("fieldset").querySelector("[data-add-row]")).focus();
    }
    renumber(table);
    if (action !== "remove" && document.body.contains(button) && !button.disabled) button.focus();
  });

  // With the script, rows are added on demand: the server's empty rows beyond one are not needed.
  form.querySelectorAll("table[data-rows]").forEach(function (table) {
    const blank = rowsOf(table).filter(function (row) {
      return Array.from(row.querySelectorAll("input:not([type=color])")).every(function (input) { return !input.value; });
    });
    blank.slice(1).forEach(function (row) { row.remove(); });
    renumber(table);
  });
  showTools(form);
  form.querySelectorAll(".row-adder").forEach(function (adder) { adder.hidden = false; });
  form.querySelectorAll(".no-script-help").forEach(function (help) { help.hidden = true; });
})();
