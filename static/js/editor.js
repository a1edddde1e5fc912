/* clinann span editor.
 *
 * The note is one text node, so a browser selection maps straight to UTF-16 offsets; the server
 * works in code points of the stored text, and this script converts at the boundary (cpToU16,
 * u16ToCp). Marks are drawn behind the text from the side list that the server renders, so the
 * server stays the source of truth and an edit re-renders only the spans it changed.
 *
 * Every edit is one request with a client id, the page's monotonic time and wall clock, and the
 * set's version; requests go one at a time, in order. A conflict (another tab changed the set)
 * reloads the list and retries the edit on the new version, so nothing either tab did is lost.
 */
(() => {
  "use strict";

  const data = JSON.parse(document.getElementById("editor-data").textContent);
  const text = data.text;
  const csrf = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
  const base = data.base || `/annotate/sets/${data.set_id}`; // a lead's gold set lives under /lead/gold
  const pageSession = `p${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
  const noteText = document.getElementById("note-text");
  const layer = document.getElementById("note-layer");
  const scroller = document.getElementById("note-scroll");
  const tooltip = document.getElementById("mark-tooltip");
  const toastEl = document.getElementById("toast");
  const saveState = document.querySelector("[data-testid=save-state]");
  const timerEl = document.querySelector("[data-testid=timer]");
  const labels = new Map(data.labels.map((l) => [l.name, l]));
  const hotkeys = new Map(data.labels.filter((l) => l.hotkey).map((l) => [l.hotkey, l.name]));

  // ---- offsets: code points (server) <-> UTF-16 (browser) --------------------------------------
  const astral = []; // UTF-16 index of every surrogate pair
  for (let i = 0; i < text.length - 1; i++) {
    const hi = text.charCodeAt(i);
    if (hi >= 0xd800 && hi <= 0xdbff) {
      const lo = text.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) { astral.push(i); i++; }
    }
  }
  const countBelow = (values, limit, shift) => { // how many values[k] - shift*k < limit
    let lo = 0, hi = values.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (values[mid] - shift * mid < limit) lo = mid + 1; else hi = mid; }
    return lo;
  };
  const cpToU16 = (cp) => cp + countBelow(astral, cp, 1);
  const u16ToCp = (u) => u - countBelow(astral, u - 1, 0);

  // ---- tokens, as the server defines them: \w+|[^\w\s] ----------------------------------------
  const tokens = [];
  // White space as Python's str.isspace() sees it: JS \s also counts U+FEFF (a BOM), Python does not.
  const SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
  const isSpace = new RegExp(`[${SPACE}]`, "u");
  const tokenPattern = new RegExp(`[\\p{L}\\p{N}_]+|[^\\p{L}\\p{N}_${SPACE}]`, "gu");
  for (const m of text.matchAll(tokenPattern)) tokens.push([m.index, m.index + m[0].length]);
  const tokenAt = (u) => { // index of the token containing u, or the first one after it
    let lo = 0, hi = tokens.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (tokens[mid][1] <= u) lo = mid + 1; else hi = mid; }
    return Math.min(lo, tokens.length - 1);
  };
  function snap(start, end) { // UTF-16 range -> whole tokens it touches, white space dropped
    if (!data.snap) {
      while (start < end && isSpace.test(text[start])) start++;
      while (end > start && isSpace.test(text[end - 1])) end--;
      return end > start ? [start, end] : null;
    }
    const first = tokenAt(start);
    if (first < 0 || !tokens.length || tokens[first][0] >= end) return null;
    let last = first;
    while (last + 1 < tokens.length && tokens[last + 1][0] < end) last++;
    return [tokens[first][0], tokens[last][1]];
  }

  // ---- the text and its marks ------------------------------------------------------------------
  const textNode = document.createTextNode(text);
  noteText.appendChild(textNode);
  const spans = new Map(); // uid -> {uid, label, fragments (code points), status, li, marks}
  let selectedUid = null;
  let selection = null; // [start, end) UTF-16 of a text selection waiting for a label
  let keyAnchor = null; // token index where a keyboard selection started
  let keyFocus = null;

  function colour(el, name) { const l = labels.get(name); if (l) el.style.setProperty("--c", l.color); }
  document.querySelectorAll(".palette-button").forEach((b) => b.style.setProperty("--c", b.dataset.color));

  function readItem(li) {
    return { uid: li.dataset.uid, label: li.dataset.label, status: li.dataset.status,
      fragments: JSON.parse(li.dataset.fragments), li, marks: [], tag: null, anchor: null,
      confidence: li.dataset.confidence ? Number(li.dataset.confidence) : null,
      attributes: JSON.parse(li.dataset.attributes || "{}"),
      concept: li.dataset.concept ? JSON.parse(li.dataset.concept) : null };
  }
  function prepareItem(li) {
    li.id = `span-${li.dataset.uid}`;
    const chip = li.querySelector(".label-chip");
    if (chip) colour(chip, li.dataset.label);
  }
  function bounds(span) { // UTF-16 extent of a span
    let s = Infinity, e = -Infinity;
    for (const [a, b] of span.fragments) { s = Math.min(s, cpToU16(a)); e = Math.max(e, cpToU16(b)); }
    return [s, e];
  }

  let lanes = new Map();
  function computeLanes() { // overlapping spans get different underline lanes
    const ordered = [...spans.values()].map((s) => [s.uid, ...bounds(s)])
      .sort((x, y) => x[1] - y[1] || y[2] - x[2]);
    const active = []; // [end, lane]
    const result = new Map();
    for (const [uid, s, e] of ordered) {
      for (let i = active.length - 1; i >= 0; i--) if (active[i][0] <= s) active.splice(i, 1);
      const used = new Set(active.map((a) => a[1]));
      let lane = 0;
      while (used.has(lane)) lane++;
      result.set(uid, lane);
      active.push([e, lane]);
    }
    return result;
  }

  function origin() {
    const r = scroller.getBoundingClientRect();
    return [r.left - scroller.scrollLeft + scroller.clientLeft, r.top - scroller.scrollTop + scroller.clientTop];
  }
  function rectsOf(start, end) {
    const range = document.createRange();
    range.setStart(textNode, start);
    range.setEnd(textNode, end);
    return [...range.getClientRects()].filter((r) => r.width > 0.5);
  }
  // ---- display: each span's label as a tag in its lane under the text, relations as arcs above it ----
  // One text node keeps offsets exact, so every line gets the same room: the line height grows
  // with the deepest nesting on the note (lanes) and the room the arcs need above the text.
  const tagLayer = document.getElementById("tag-layer");
  const arcLayer = document.getElementById("arc-layer");
  const SVG = "http://www.w3.org/2000/svg";
  const DISPLAY = { full: { tag: 14, font: 10, arcs: 30 }, compact: { tag: 10, font: 8, arcs: 18 } };
  let display = DISPLAY[data.display] ? data.display : "full";
  let lineRoom = -1; // px above and below the text on every line
  const charWidth = {};
  function measureChars() {
    const ctx = document.createElement("canvas").getContext("2d");
    for (const [mode, d] of Object.entries(DISPLAY)) {
      ctx.font = `600 ${d.font}px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace`;
      charWidth[mode] = ctx.measureText("MMMMMMMMMM").width / 10 || d.font * 0.6;
    }
  }
  measureChars();
  // Short forms that stay unique: a label that is short already, else its initials, else its start.
  const shortName = new Map();
  (() => {
    const taken = new Set();
    for (const { name } of data.labels) {
      const words = name.split(/[\s_\-/]+|(?<=[a-z])(?=[A-Z])/).filter(Boolean);
      const candidates = name.length <= 4 ? [name] : [
        words.length > 1 ? words.map((w) => w[0].toUpperCase()).join("").slice(0, 4) : name.slice(0, 3),
        name.slice(0, 3), name.slice(0, 4), name.slice(0, 5)];
      let chosen = candidates.find((c) => !taken.has(c.toLowerCase()));
      for (let n = 2; !chosen; n++) if (!taken.has(`${name.slice(0, 3)}${n}`.toLowerCase())) chosen = `${name.slice(0, 3)}${n}`;
      taken.add(chosen.toLowerCase());
      shortName.set(name, chosen);
    }
  })();
  function layout() { // the line height the lanes and arcs need; true when it changed
    const d = DISPLAY[display];
    let deepest = 0;
    for (const lane of lanes.values()) deepest = Math.max(deepest, lane + 1);
    const room = Math.max(Math.max(deepest, 1) * d.tag + 4, data.relation_types.length ? d.arcs : 0);
    document.querySelector(".editor").dataset.display = display;
    if (room === lineRoom) return false;
    lineRoom = room;
    noteText.style.lineHeight = `${18 + 2 * room}px`;
    return true;
  }
  function tagText(span, width) {
    const full = span.label, short = shortName.get(span.label) || span.label.slice(0, 3);
    const fits = Math.floor((width - 3) / charWidth[display]);
    if (display === "full" && full.length <= fits) return full;
    return short;
  }
  function drawSpans(list) { // measure all first, then write, so layout runs once
    if (!list.length) return; // nothing to draw: no forced layout for the origin either
    const [ox, oy] = origin();
    const planned = list.map((span) => [span, span.fragments.map(([a, b]) => rectsOf(cpToU16(a), cpToU16(b)))]);
    const fragment = document.createDocumentFragment();
    const tags = document.createDocumentFragment();
    const d = DISPLAY[display];
    for (const [span, fragmentRects] of planned) {
      span.marks.forEach((m) => m.remove());
      span.marks = [];
      if (span.tag) span.tag.remove();
      span.tag = null;
      span.anchor = null;
      const lane = lanes.get(span.uid) || 0;
      const selected = span.uid === selectedUid;
      fragmentRects.forEach((rects, i) => rects.forEach((r, j) => {
        const mark = document.createElement("div");
        mark.className = `mark${span.status === "pending" ? " pending" : ""}${selected ? " selected" : ""}`;
        if (span.fragments.length > 1) mark.classList.add("discontinuous");
        mark.dataset.uid = span.uid;
        mark.dataset.fragment = String(i);
        colour(mark, span.label);
        mark.style.left = `${r.left - ox}px`;
        mark.style.top = `${r.top - oy}px`;
        mark.style.width = `${r.width}px`;
        mark.style.height = `${r.height + 2}px`;
        span.marks.push(mark);
        fragment.appendChild(mark);
        if (i === 0 && j === 0) { // the label tag, in the span's lane, under its first line
          const tag = document.createElement("div");
          tag.className = `tag${span.status === "pending" ? " pending" : ""}${selected ? " selected" : ""}`;
          if (span.confidence !== null && span.confidence !== undefined) {
            tag.dataset.confidence = span.confidence.toFixed(2);
            if (span.status === "pending" && span.confidence < 0.5) tag.classList.add("doubtful");
          }
          tag.dataset.uid = span.uid;
          tag.dataset.testid = "span-tag";
          colour(tag, span.label);
          const width = Math.max(r.width, charWidth[display] * 2 + 3);
          tag.textContent = tagText(span, width);
          tag.title = `${span.label}${span.status === "pending" ? " (pre-label" + (tag.dataset.confidence ? `, confidence ${tag.dataset.confidence}` : "") + ")" : ""}`;
          tag.style.left = `${r.left - ox}px`;
          tag.style.top = `${r.bottom - oy + 3 + lane * d.tag}px`;
          tag.style.width = `${width}px`;
          tag.style.height = `${d.tag - 1}px`;
          tag.style.fontSize = `${d.font}px`;
          tag.style.lineHeight = `${d.tag - 1}px`;
          span.tag = tag;
          span.anchor = [r.left - ox + r.width / 2, r.top - oy, r.left - ox, r.right - ox];
          tags.appendChild(tag);
        }
      }));
    }
    layer.appendChild(fragment);
    tagLayer.appendChild(tags);
  }
  // arcs: "always", or "moved" (only when the lines were laid out again or a span an arc ends on
  // moved): an accept on a dense note redraws one span, not 300 arcs.
  // `then`: the page's other changes, made once the spans were measured (see applyResult).
  function redraw(uids, arcs = "always", then = null) {
    const before = lanes;
    lanes = computeLanes();
    const relaid = layout();
    const todo = new Set(relaid ? spans.keys() : uids || spans.keys());
    for (const [uid, lane] of lanes) if (before.get(uid) !== lane) todo.add(uid);
    drawSpans([...todo].map((u) => spans.get(u)).filter(Boolean));
    if (then) then();
    if (relaid && selection) drawSelection();
    if (arcs === "always" || relaid || [...todo].some((u) => arcEnds.has(u) && arcEnds.get(u) !== anchorKey(spans.get(u)))) drawArcs();
  }

  // Arcs: over one line, shorter arcs sit lower than the longer ones they overlap; across lines, an
  // arc rises from the head and comes down on the tail. Pre-labelled relations are dashed.
  let selectedRelation = null;
  let arcEnds = new Map(); // span uid -> where the arcs drawn last met it
  function anchorKey(span) { return span && span.anchor ? `${span.anchor[0].toFixed(1)},${span.anchor[1].toFixed(1)}` : ""; }
  function arcLevels(items) {
    const byLine = new Map();
    for (const item of items) if (item.sameLine) {
      const key = Math.round(item.y1);
      if (!byLine.has(key)) byLine.set(key, []);
      byLine.get(key).push(item);
    }
    for (const line of byLine.values()) {
      line.sort((a, b) => (a.right - a.left) - (b.right - b.left));
      const placed = [];
      let top = 1;
      for (const item of line) {
        let level = 1;
        for (const other of placed) if (other.left < item.right && item.left < other.right) level = Math.max(level, other.level + 1);
        item.level = level;
        top = Math.max(top, level);
        placed.push(item);
      }
      for (const item of line) item.levels = top;
    }
  }
  function drawArcs() {
    if (!arcLayer) return;
    // Both sizes read before either is written: a write between them would force a second layout.
    const width = String(scroller.scrollWidth), height = String(scroller.scrollHeight);
    if (arcLayer.getAttribute("width") !== width) arcLayer.setAttribute("width", width);
    if (arcLayer.getAttribute("height") !== height) arcLayer.setAttribute("height", height);
    const items = [];
    arcEnds = new Map();
    for (const relation of relations.values()) {
      const head = spans.get(relation.head), tail = spans.get(relation.tail);
      arcEnds.set(relation.head, anchorKey(head));
      arcEnds.set(relation.tail, anchorKey(tail));
      if (!head || !tail || !head.anchor || !tail.anchor) continue;
      const [x1, y1] = head.anchor, [x2, y2] = tail.anchor;
      items.push({ relation, x1, y1, x2, y2, sameLine: Math.abs(y1 - y2) < 2,
        left: Math.min(x1, x2), right: Math.max(x1, x2), level: 1, levels: 1 });
    }
    arcLevels(items);
    const parts = [];
    const rise = lineRoom - 2;
    for (const item of items) {
      const { relation, x1, y1, x2, y2 } = item;
      let path, lx, ly;
      if (item.sameLine) {
        const h = 6 + (rise - 8) * (item.level / item.levels);
        path = `M${x1},${y1} C${x1},${y1 - h} ${x2},${y2 - h} ${x2},${y2}`;
        lx = (x1 + x2) / 2; ly = y1 - 0.75 * h;
      } else {
        const h = rise;
        path = `M${x1},${y1} C${x1},${y1 - h} ${x2},${y2 - h} ${x2},${y2}`;
        lx = (x1 + x2) / 2; ly = (y1 + y2) / 2 - 0.75 * h;
      }
      const cls = `arc${relation.status === "pending" ? " pending" : ""}${relation.uid === selectedRelation ? " active" : ""}`;
      const name = escapeXml(relation.type);
      const label = display === "full" ? `<text x="${lx.toFixed(1)}" y="${(ly + 3).toFixed(1)}">${name}</text>` : "";
      parts.push(`<g class="${cls}" data-uid="${escapeXml(relation.uid)}" data-testid="relation-arc"><title>${name}${relation.status === "pending" ? " (pre-label)" : ""}</title>` +
        `<path d="${path}" marker-end="url(#arrow)"></path>${label}</g>`);
    }
    arcLayer.innerHTML = `<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z"></path></marker></defs>${parts.join("")}`;
    if (selectedUid) setArcsActive(relationsOf(selectedUid), true);
  }
  // A relation decided: its arc keeps its place and only its dash and title change, so one group is
  // touched instead of the 300 of a dense note.
  function restyleArcs(uids) {
    for (const uid of uids) {
      const g = arcOf(uid), relation = relations.get(uid);
      if (!g || !relation) continue;
      g.classList.toggle("pending", relation.status === "pending");
      const title = g.querySelector("title");
      if (title) title.textContent = `${relation.type}${relation.status === "pending" ? " (pre-label)" : ""}`;
    }
  }
  function escapeXml(value) { return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`); }
  function arcOf(uid) { return arcLayer ? arcLayer.querySelector(`g[data-uid="${CSS.escape(uid)}"]`) : null; }
  function setArcsActive(uids, on) { for (const uid of uids) { const g = arcOf(uid); if (g) g.classList.toggle("active", on); } }
  function relationsOf(spanUid) { return [...relations.values()].filter((r) => r.head === spanUid || r.tail === spanUid).map((r) => r.uid); }
  function selectRelation(uid) {
    const previous = selectedRelation && relations.get(selectedRelation);
    if (previous) { previous.li.classList.remove("selected"); highlight([previous.head, previous.tail], false); setArcsActive([previous.uid], false); }
    selectedRelation = uid && relations.has(uid) ? uid : null;
    if (!selectedRelation) return;
    const relation = relations.get(selectedRelation);
    relation.li.classList.add("selected");
    relation.li.scrollIntoView({ block: "nearest" });
    highlight([relation.head, relation.tail], true);
    setArcsActive([relation.uid], true);
    announce(`${relation.type} relation${relation.status === "pending" ? ", pre-label" : ""}: ${relation.li.querySelector(".relation-text").textContent.replace(/\s+/g, " ").trim()}`);
  }
  function loadList(container) {
    for (const span of spans.values()) { span.marks.forEach((m) => m.remove()); if (span.tag) span.tag.remove(); }
    spans.clear();
    container.querySelectorAll("#span-list > li").forEach((li) => { prepareItem(li); spans.set(li.dataset.uid, readItem(li)); });
    lanes = new Map();
    redraw();
  }

  let selectionMarks = [];
  function drawSelection() {
    selectionMarks.forEach((m) => m.remove());
    selectionMarks = [];
    if (!selection) return;
    const [ox, oy] = origin();
    for (const r of rectsOf(selection[0], selection[1])) {
      const m = document.createElement("div");
      m.className = "selection-mark";
      m.style.left = `${r.left - ox}px`;
      m.style.top = `${r.top - oy}px`;
      m.style.width = `${r.width}px`;
      m.style.height = `${r.height}px`;
      layer.appendChild(m);
      selectionMarks.push(m);
    }
    noteText.dataset.selection = `${u16ToCp(selection[0])}-${u16ToCp(selection[1])}`;
  }
  function setSelection(range) {
    selection = range;
    if (range) selectSpan(null, false);
    drawSelection();
    if (!range) delete noteText.dataset.selection;
  }

  function selectSpan(uid, scroll = true) {
    if (linking && uid && uid !== linking.head && spans.has(uid)) { linking.candidate = uid; }
    const previous = selectedUid ? spans.get(selectedUid) : null;
    if (previous) {
      previous.li.setAttribute("aria-selected", "false"); previous.li.classList.remove("selected");
      previous.marks.forEach((m) => m.classList.remove("selected"));
      if (previous.tag) previous.tag.classList.remove("selected");
      setArcsActive(relationsOf(previous.uid), false);
    }
    if (uid && selectedRelation) selectRelation(null);
    selectedUid = uid && spans.has(uid) ? uid : null;
    noteText.removeAttribute("aria-activedescendant");
    showDetails();
    if (!selectedUid) return;
    if (selection) { selection = null; drawSelection(); delete noteText.dataset.selection; }
    const span = spans.get(selectedUid);
    span.li.setAttribute("aria-selected", "true");
    span.li.classList.add("selected");
    span.marks.forEach((m) => m.classList.add("selected"));
    if (span.tag) span.tag.classList.add("selected");
    setArcsActive(relationsOf(span.uid), true);
    noteText.setAttribute("aria-activedescendant", span.li.id);
    if (scroll) {
      span.li.scrollIntoView({ block: "nearest" });
      if (span.marks[0]) span.marks[0].scrollIntoView({ block: "nearest" });
    }
    announce(`${span.label}${span.status === "pending" ? " pre-label" : ""}: ${span.li.querySelector(".span-text").textContent}`);
  }
  // The side list in text order, or least confident pre-labels first (then the rest in text order).
  const orderBox = document.getElementById("span-order");
  function listOrder(a, b) {
    if (orderBox && orderBox.value === "confidence") {
      const rank = (s) => (s.status === "pending" ? (s.confidence ?? 1.5) : 2);
      if (rank(a) !== rank(b)) return rank(a) - rank(b);
    }
    return bounds(a)[0] - bounds(b)[0] || bounds(b)[1] - bounds(a)[1];
  }
  function sortList() {
    const list = document.getElementById("span-list");
    const items = [...spans.values()].sort(listOrder).map((s) => s.li);
    list.append(...items);
  }
  if (orderBox) orderBox.addEventListener("change", () => { sortList(); noteText.focus({ preventScroll: true }); });
  function orderedUids() { return [...document.querySelectorAll("#span-list > li")].map((li) => li.dataset.uid); }

  // ---- sending edits ---------------------------------------------------------------------------
  let version = data.version;
  let counter = 0;
  const queue = [];
  let inFlight = false;
  let undoStack = [];
  let redoStack = [];
  const UNDOABLE = new Set(["add", "delete", "reject", "accept", "accept_all", "relabel", "modify", "note",
    "relation_add", "relation_delete", "relation_accept", "relation_reject", "attribute_set", "concept_set", "answer",
    "adopt", "ambiguous"]);

  function toast(message) {
    toastEl.textContent = message;
    toastEl.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { toastEl.hidden = true; }, 6000);
  }
  const announcer = document.getElementById("announcer");
  function announce(message) { announcer.textContent = message; }
  function setSaving(state) { saveState.textContent = state; saveState.dataset.state = state; }

  function send(command) {
    if (data.status !== "open" && !["note", "reopen"].includes(command.kind)) { toast(`This note is ${data.status}.`); return null; }
    const now = performance.now();
    command.client_id = `${pageSession}-e${++counter}`;
    command.page_session = pageSession;
    command.monotonic_ms = now;
    command.wall_time_ms = Date.now();
    localTimes.push(now);
    queue.push(command);
    pump();
    return command.client_id;
  }

  function applicable(command) { // after a conflict: may this edit still be made?
    if (["delete", "reject", "accept", "relabel", "modify", "attribute_set", "concept_set"].includes(command.kind)) return spans.has(command.uid);
    if (["relation_delete", "relation_accept", "relation_reject"].includes(command.kind)) return relations.has(command.uid);
    if (command.kind === "relation_add") return spans.has(command.head) && spans.has(command.tail);
    return true;
  }

  async function reloadList() {
    const response = await fetch(`${base}/spans`, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(`reload ${response.status}`);
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    const fresh = holder.querySelector("#span-list-container");
    document.getElementById("span-list-container").replaceWith(fresh);
    version = Number(fresh.dataset.version);
    setStatus(fresh.dataset.status);
    loadList(fresh);
    if (orderBox && orderBox.value !== "text") sortList();
    if (document.getElementById("relation-list-container")) {
      const answer = await fetch(`${base}/relations`, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (answer.ok) { const box = document.createElement("div"); box.innerHTML = await answer.text(); takeRelations(box); }
    }
  }

  function applyResult(html) {
    const holder = document.createElement("div");
    holder.innerHTML = html;
    const result = holder.firstElementChild;
    const list = document.getElementById("span-list");
    const changed = [], gone = [], moves = [];
    // The spans first in the map only: the page is measured for their new marks while its layout is
    // still clean, and the side list changes after (a change before would force a layout of the note).
    result.querySelectorAll(":scope > ol.span-changes > li").forEach((li) => { // the spans; the relations follow
      const uid = li.dataset.uid;
      const old = spans.get(uid);
      if (li.dataset.removed) {
        if (old) { gone.push(old); spans.delete(uid); }
        if (selectedUid === uid) selectedUid = null;
        return;
      }
      const span = readItem(li);
      if (old) { span.marks = old.marks; span.tag = old.tag; } // drawSpans takes them away once it measured
      spans.set(uid, span);
      changed.push(uid);
      moves.push([old, span]);
    });
    // The whole list (a resent edit), the changed relations only, or nothing when none changed.
    const whole = result.querySelector("#relation-list-container");
    const patched = whole ? null : relationChanges(result);
    redraw(changed, whole || (patched && patched.structural) ? "always" : "moved", () => {
      for (const old of gone) { old.marks.forEach((m) => m.remove()); if (old.tag) old.tag.remove(); old.li.remove(); }
      for (const [old, span] of moves) {
        if (old) old.li.remove();
        prepareItem(span.li);
        const after = [...list.children].find((other) => listOrder(spans.get(other.dataset.uid), span) > 0);
        list.insertBefore(span.li, after || null);
      }
      if (whole) takeRelations(result, false);
      else if (patched) patchRelations(result);
    });
    if (patched && !patched.structural) restyleArcs(patched.restyled);
    updateCounts(Number(result.dataset.pending));
    setStatus(result.dataset.status);
    showDetails();
    return changed;
  }

  // ---- relations: the server renders the list, this script keeps a map and highlights on hover ---------
  const relations = new Map(); // uid -> {uid, type, head, tail, status, li}
  function readRelations() {
    relations.clear();
    document.querySelectorAll("#relation-list > li").forEach((li) => relations.set(li.dataset.uid,
      { uid: li.dataset.uid, type: li.dataset.type, head: li.dataset.head, tail: li.dataset.tail, status: li.dataset.status, li }));
  }
  // The list an answer carries, when it reads differently from the one shown (an edit answer leaves
  // it out when no relation changed). True when it was taken.
  function takeRelations(holder, draw = true) {
    const fresh = holder.querySelector("#relation-list-container");
    const current = document.getElementById("relation-list-container");
    if (!fresh || !current || fresh.innerHTML === current.innerHTML) return false;
    current.replaceWith(fresh);
    readRelations();
    if (selectedRelation && !relations.has(selectedRelation)) selectedRelation = null;
    if (selectedRelation) relations.get(selectedRelation).li.classList.add("selected");
    if (draw) drawArcs();
    return true;
  }
  // An edit answer's changed relations. What kind of change: structural when one was added, removed,
  // retyped or re-linked (its arc moves, so all are laid out again); otherwise only their look
  // changed (decided), and `restyled` names them. Null when the answer carries none.
  function relationChanges(holder) {
    const changes = holder.querySelector(":scope > ol.relation-changes");
    if (!changes || !document.getElementById("relation-list")) return null;
    let structural = false;
    const restyled = [];
    for (const li of changes.children) {
      const old = relations.get(li.dataset.uid);
      if (li.dataset.removed ? old : !old || old.type !== li.dataset.type || old.head !== li.dataset.head || old.tail !== li.dataset.tail) structural = true;
      else if (!li.dataset.removed) restyled.push(li.dataset.uid);
    }
    return { structural, restyled };
  }
  // Each changed relation put in its place in the list by its order key, or taken out.
  function patchRelations(holder) {
    const changes = holder.querySelector(":scope > ol.relation-changes");
    const list = document.getElementById("relation-list");
    for (const li of [...changes.children]) {
      const uid = li.dataset.uid, old = relations.get(uid);
      if (old) old.li.remove();
      if (li.dataset.removed) {
        relations.delete(uid);
        if (selectedRelation === uid) selectedRelation = null;
        continue;
      }
      const items = list.children;
      let low = 0, high = items.length; // the first item ordered after this one
      while (low < high) { const mid = (low + high) >> 1; if (items[mid].dataset.order > li.dataset.order) high = mid; else low = mid + 1; }
      list.insertBefore(li, items[low] || null);
      relations.set(uid, { uid, type: li.dataset.type, head: li.dataset.head, tail: li.dataset.tail, status: li.dataset.status, li });
      if (selectedRelation === uid) li.classList.add("selected");
    }
    const count = document.querySelector("#relation-list-container [data-testid=relation-count]");
    if (count) count.textContent = changes.dataset.count;
  }
  function highlight(uids, on) {
    for (const uid of uids) {
      const span = spans.get(uid);
      if (!span) continue;
      span.marks.forEach((m) => m.classList.toggle("related", on));
      if (span.tag) span.tag.classList.toggle("related", on);
    }
  }
  const relationsBox = document.querySelector(".relations-section");
  if (relationsBox) {
    relationsBox.addEventListener("mouseover", (event) => {
      const li = event.target.closest("#relation-list > li");
      if (li) { highlight([li.dataset.head, li.dataset.tail], true); setArcsActive([li.dataset.uid], true); }
    });
    relationsBox.addEventListener("mouseout", (event) => {
      const li = event.target.closest("#relation-list > li");
      if (li && li.dataset.uid !== selectedRelation) { highlight([li.dataset.head, li.dataset.tail], false); setArcsActive([li.dataset.uid], false); }
    });
    relationsBox.addEventListener("click", (event) => {
      const button = event.target.closest("[data-relation-action]");
      const li = event.target.closest("#relation-list > li");
      if (!li) return;
      if (button) {
        highlight([li.dataset.head, li.dataset.tail], false);
        send({ kind: `relation_${button.dataset.relationAction}`, uid: li.dataset.uid });
      } else { selectSpan(null); selectRelation(li.dataset.uid); }
    });
  }

  // Arcs and tags in the note: hover highlights, a click selects, dragging a tag onto another links them.
  if (arcLayer) {
    arcLayer.addEventListener("mouseover", (event) => {
      const g = event.target.closest("g.arc");
      const relation = g && relations.get(g.dataset.uid);
      if (relation) { g.classList.add("hover"); highlight([relation.head, relation.tail], true); }
    });
    arcLayer.addEventListener("mouseout", (event) => {
      const g = event.target.closest("g.arc");
      const relation = g && relations.get(g.dataset.uid);
      if (relation) { g.classList.remove("hover"); if (relation.uid !== selectedRelation) highlight([relation.head, relation.tail], false); }
    });
    arcLayer.addEventListener("click", (event) => {
      const g = event.target.closest("g.arc");
      if (g) { selectSpan(null); setSelection(null); selectRelation(g.dataset.uid); noteText.focus({ preventScroll: true }); }
    });
  }
  let dragging = null; // {head, x, y, line}: a tag being dragged onto another span
  tagLayer.addEventListener("pointerdown", (event) => {
    const tag = event.target.closest(".tag");
    if (!tag || event.button !== 0) return;
    event.preventDefault();
    dragging = { head: tag.dataset.uid, x: event.clientX, y: event.clientY, line: null };
  });
  document.addEventListener("pointermove", (event) => {
    if (!dragging || !data.relation_types.length || data.status !== "open") return;
    if (!dragging.line && Math.hypot(event.clientX - dragging.x, event.clientY - dragging.y) < 6) return;
    const [ox, oy] = origin();
    if (!dragging.line) {
      dragging.line = document.createElementNS(SVG, "line");
      dragging.line.setAttribute("class", "drag-line");
      const [x, y] = spans.get(dragging.head).anchor || [dragging.x - ox, dragging.y - oy];
      dragging.line.setAttribute("x1", x); dragging.line.setAttribute("y1", y);
      arcLayer.appendChild(dragging.line);
    }
    dragging.line.setAttribute("x2", event.clientX - ox); dragging.line.setAttribute("y2", event.clientY - oy);
  });
  document.addEventListener("pointerup", (event) => {
    if (!dragging) return;
    const { head, line } = dragging;
    dragging = null;
    if (!line) { // a click on a tag: select that span (or end a relation being made)
      if (linking) finishLink(head); else { setSelection(null); selectSpan(head, false); }
      noteText.focus({ preventScroll: true });
      return;
    }
    line.remove();
    const over = document.elementFromPoint(event.clientX, event.clientY);
    let tail = over && over.closest(".tag") ? over.closest(".tag").dataset.uid : null;
    if (!tail) { const u = offsetAt(event.clientX, event.clientY); const here = u === null ? [] : spansAt(Math.min(u, text.length - 1)); tail = here.length ? here[0].uid : null; }
    if (tail && tail !== head) linkBetween(head, tail);
  });
  function linkBetween(headUid, tailUid) { // a drag from one span to another: the types that fit
    const head = spans.get(headUid), tail = spans.get(tailUid);
    const types = data.relation_types.filter((t) => t.head_types.includes(head.label) && t.tail_types.includes(tail.label));
    if (!types.length) { toast(`No relation type goes from ${head.label} to ${tail.label}.`); return; }
    if (types.length === 1) { sendRelation(types[0].name, headUid, tailUid); return; }
    selectSpan(headUid, false);
    openTypeMenu(head, types, tailUid);
  }
  function sendRelation(type, head, tail) {
    const uid = `r${pageSession.slice(1, 9)}${(++counter).toString(36)}`;
    send({ kind: "relation_add", uid, label: type, head, tail });
  }

  let linking = null; // {head, type, candidate}: a relation being made
  const hint = document.getElementById("relation-hint");
  function startLink() {
    const head = spans.get(selectedUid);
    if (!head) { toast("Select the span the relation starts from."); return; }
    const types = data.relation_types.filter((t) => t.head_types.includes(head.label));
    if (!types.length) { toast(`No relation starts from ${head.label}.`); return; }
    openTypeMenu(head, types, null);
  }
  function openTypeMenu(head, types, tail) {
    const menu = document.getElementById("relation-type-menu");
    menu.replaceChildren(...types.map((t, i) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.relationType = t.name;
      button.dataset.testid = `relation-type-${t.name}`;
      button.textContent = `${i + 1}  ${t.name} → ${t.tail_types.join(" / ")}`;
      li.appendChild(button);
      return li;
    }));
    const dialog = document.getElementById("relation-types");
    dialog.dataset.head = head.uid;
    dialog.dataset.tail = tail || "";
    dialog.showModal();
    menu.querySelector("button").focus();
  }
  function chooseType(name) {
    const dialog = document.getElementById("relation-types");
    dialog.close();
    if (dialog.dataset.tail) { sendRelation(name, dialog.dataset.head, dialog.dataset.tail); return; }
    linking = { head: dialog.dataset.head, type: data.relation_types.find((t) => t.name === name), candidate: null };
    hint.hidden = false;
    hint.textContent = `${name}: now select the ${linking.type.tail_types.join(" or ")} it goes to (Enter or click), Esc cancels.`;
    document.querySelector(".editor").classList.add("linking");
  }
  function finishLink(tail) {
    if (!linking) return;
    const { head, type } = linking;
    const target = spans.get(tail);
    if (!target || tail === head) return;
    if (!type.tail_types.includes(target.label)) { toast(`A ${type.name} relation ends at ${type.tail_types.join(" or ")}, not ${target.label}.`); return; }
    cancelLink();
    sendRelation(type.name, head, tail);
  }
  function cancelLink() {
    linking = null;
    hint.hidden = true;
    document.querySelector(".editor").classList.remove("linking");
  }
  const typeDialog = document.getElementById("relation-types");
  typeDialog.addEventListener("click", (event) => {
    const button = event.target.closest("[data-relation-type]");
    if (button) chooseType(button.dataset.relationType);
  });
  typeDialog.addEventListener("keydown", (event) => {
    const n = Number(event.key);
    const buttons = typeDialog.querySelectorAll("[data-relation-type]");
    if (n >= 1 && n <= buttons.length) { event.preventDefault(); chooseType(buttons[n - 1].dataset.relationType); }
  });
  const linkButton = document.getElementById("relation-start");
  if (linkButton) linkButton.addEventListener("click", startLink);

  // ---- the selected span's attributes and concept code ----------------------------------------
  const details = document.getElementById("span-details");
  const attributeBox = document.getElementById("detail-attributes");
  function showDetails() {
    const span = selectedUid ? spans.get(selectedUid) : null;
    details.hidden = !span || (!data.attributes.length && !data.coding && !data.relation_types.length);
    if (!span) return;
    const applicable = data.attributes.filter((a) => !a.applies_to.length || a.applies_to.includes(span.label));
    attributeBox.replaceChildren(...applicable.map((a) => {
      const label = document.createElement("label");
      label.textContent = `${a.name} `;
      const select = document.createElement("select");
      select.dataset.attribute = a.name;
      select.dataset.testid = `attribute-${a.name}`;
      select.append(new Option("—", ""), ...a.values.map((v) => new Option(v, v)));
      select.value = span.attributes[a.name] || "";
      label.appendChild(select);
      return label;
    }));
    const current = document.getElementById("concept-current");
    if (current) current.textContent = span.concept ? `${span.concept.system}:${span.concept.code} ${span.concept.name}` : "none";
  }
  attributeBox.addEventListener("change", (event) => {
    const select = event.target.closest("select[data-attribute]");
    const span = spans.get(selectedUid);
    if (!select || !span) return;
    send({ kind: "attribute_set", uid: span.uid, attribute: select.dataset.attribute, value: select.value || null });
    noteText.focus({ preventScroll: true });
  });

  const conceptSearch = document.getElementById("concept-search");
  const conceptResults = document.getElementById("concept-results");
  let conceptTimer = null;
  let conceptQuery = 0;
  let conceptActive = -1;
  async function lookUp(query) {
    const asked = ++conceptQuery;
    const response = await fetch(`${base}/concepts?q=${encodeURIComponent(query)}`, { credentials: "same-origin" });
    if (!response.ok || asked !== conceptQuery) return;
    const { results } = await response.json();
    conceptActive = results.length ? 0 : -1;
    conceptResults.replaceChildren(...results.map((r, i) => {
      const li = document.createElement("li");
      li.dataset.system = r.system;
      li.dataset.code = r.code;
      li.dataset.testid = "concept-result";
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", String(i === 0));
      li.textContent = `${r.system}:${r.code} ${r.preferred_term}${r.term && r.term !== r.preferred_term ? ` (${r.term})` : ""}`;
      return li;
    }));
    conceptSearch.setAttribute("aria-expanded", String(results.length > 0));
  }
  function chooseConcept(li) {
    const span = spans.get(selectedUid);
    if (!li || !span) return;
    send({ kind: "concept_set", uid: span.uid, concept_system: li.dataset.system, concept_code: li.dataset.code });
    conceptResults.replaceChildren();
    conceptSearch.value = "";
    conceptSearch.setAttribute("aria-expanded", "false");
    noteText.focus({ preventScroll: true });
  }
  if (conceptSearch) {
    conceptSearch.addEventListener("input", () => {
      clearTimeout(conceptTimer);
      const query = conceptSearch.value.trim();
      conceptTimer = setTimeout(() => { if (query) lookUp(query); else conceptResults.replaceChildren(); }, 150);
    });
    conceptSearch.addEventListener("keydown", (event) => {
      const items = [...conceptResults.children];
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        if (!items.length) return;
        conceptActive = (conceptActive + (event.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
        items.forEach((li, i) => li.setAttribute("aria-selected", String(i === conceptActive)));
      } else if (event.key === "Enter") {
        event.preventDefault();
        chooseConcept(items[conceptActive]);
      } else if (event.key === "Escape") {
        conceptResults.replaceChildren();
        noteText.focus({ preventScroll: true });
      }
    });
    conceptResults.addEventListener("click", (event) => chooseConcept(event.target.closest("li")));
    document.getElementById("concept-clear").addEventListener("click", () => {
      const span = spans.get(selectedUid);
      if (span && span.concept) send({ kind: "concept_set", uid: span.uid, concept_code: null });
    });
  }

  // ---- document questions ----------------------------------------------------------------------
  const questions = document.getElementById("questions");
  function evidenceOf(list) { return JSON.parse(list.dataset.evidence || "[]"); }
  function drawEvidence(list) {
    list.replaceChildren(...evidenceOf(list).map((uid) => {
      const li = document.createElement("li");
      const span = spans.get(uid);
      li.dataset.uid = uid;
      li.dataset.testid = "evidence-item";
      li.textContent = span ? span.li.querySelector(".span-text").textContent : uid;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "small";
      remove.textContent = "×";
      remove.title = "Remove this evidence";
      remove.dataset.evidenceRemove = uid;
      li.appendChild(remove);
      return li;
    }));
  }
  if (questions) {
    // Answers are saved as they change; Enter in a text answer must not submit (and reload) the page.
    questions.addEventListener("submit", (event) => event.preventDefault());
    questions.querySelectorAll(".evidence-list").forEach(drawEvidence);
    questions.addEventListener("change", (event) => {
      const fieldset = event.target.closest("fieldset.question");
      if (!fieldset || fieldset.dataset.kind === "evidence") return;
      const key = fieldset.dataset.key, kind = fieldset.dataset.kind;
      let value = null;
      if (kind === "multi_choice") value = [...fieldset.querySelectorAll("input:checked")].map((i) => i.value);
      else if (kind === "text") value = fieldset.querySelector("textarea").value;
      else {
        const checked = fieldset.querySelector("input:checked");
        value = checked ? (kind === "scale" ? Number(checked.value) : checked.value) : null;
      }
      send({ kind: "answer", key, value: Array.isArray(value) && !value.length ? null : value });
    });
    questions.addEventListener("click", (event) => {
      const add = event.target.closest("[data-evidence-add]");
      const remove = event.target.closest("[data-evidence-remove]");
      const fieldset = event.target.closest("fieldset.question");
      if (!fieldset || (!add && !remove)) return;
      const list = fieldset.querySelector(".evidence-list");
      let value = evidenceOf(list);
      if (add) {
        if (!selectedUid) { toast("Select the span that is evidence first."); return; }
        if (value.includes(selectedUid)) return;
        value = [...value, selectedUid];
      } else value = value.filter((uid) => uid !== remove.dataset.evidenceRemove);
      list.dataset.evidence = JSON.stringify(value);
      drawEvidence(list);
      send({ kind: "answer", key: fieldset.dataset.key, value: value.length ? value : null });
    });
  }

  function updateCounts(pending) {
    document.querySelector("[data-testid=span-count]").textContent = String(spans.size);
    let badge = document.querySelector("[data-testid=pending-count]");
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "pending-count";
      badge.dataset.testid = "pending-count";
      document.getElementById("spans-title").appendChild(badge);
    }
    badge.textContent = pending ? `${pending} undecided` : "";
    badge.hidden = !pending;
  }

  function setStatus(status) {
    data.status = status;
    const el = document.querySelector("[data-testid=set-status]");
    el.dataset.status = status;
    if (status === "submitted") el.textContent = data.gold ? "Submitted. Changes are closed. Reopen to adjudicate more." : "Submitted. Changes are closed.";
    else if (status === "skipped") el.textContent = "Skipped.";
    else el.textContent = "";
    if (status === "submitted" && data.may_reopen && !data.gold) el.textContent = "Submitted. Changes are closed; Reopen to change it.";
    document.querySelector(".editor").classList.toggle("closed", status !== "open");
    // aria-disabled, not disabled: the buttons stay focusable, so the scrolling palette stays reachable.
    document.querySelectorAll("#palette .palette-button").forEach((b) => { b.setAttribute("aria-disabled", String(status !== "open")); });
    const reopen = document.querySelector("[data-action=reopen]");
    if (reopen) reopen.hidden = status !== "submitted";
    // A closed note offers no Submit (nor Skip, Accept all): Reopen takes its place where allowed.
    document.querySelectorAll("[data-action=submit], [data-action=skip], [data-action=accept-all]").forEach((b) => { b.hidden = status !== "open"; });
  }

  async function pump() {
    if (inFlight || !queue.length) return;
    inFlight = true;
    setSaving("Saving…");
    const command = queue[0];
    command.version = version;
    let retryDelay = 0;
    try {
      const response = await fetch(`${base}/edits`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "text/html", "X-CSRF-Token": csrf },
        body: JSON.stringify(command),
      });
      if (response.ok) {
        version = Number(response.headers.get("X-Set-Version"));
        const changed = applyResult(await response.text());
        queue.shift();
        applied(command, changed);
      } else if (response.status === 409) {
        await reloadList(); // another tab changed the set: take its state, then retry ours
        if (!applicable(command)) { queue.shift(); toast("Another window changed this span; your edit was not needed."); }
      } else if (response.status === 422 || response.status === 400) {
        queue.shift();
        const body = await response.json().catch(() => ({}));
        if (command.kind === "relabel" && body.relations) offerRelationChoice(command, body);
        else toast(typeof body.detail === "string" ? body.detail : "That edit is not possible.");
      } else if (response.status === 401 || response.status === 403) {
        setSaving("Not saved");
        toast("Your session has ended. Log in again in another tab; unsaved edits stay queued here.");
        retryDelay = 5000;
      } else {
        // 503 while the database is away (Retry-After says when to come back), or another 5xx.
        const after = Number(response.headers.get("Retry-After"));
        retryDelay = after > 0 ? Math.min(after, 30) * 1000 : 1000;
      }
    } catch (error) {
      retryDelay = 1000; // offline or server restarting: same client id, so a retry is safe
    }
    inFlight = false;
    if (retryDelay) {
      // The edits stay queued in the page, in order; the physician sees that they are not saved yet.
      setSaving(`Not saved yet: ${queue.length} edit${queue.length === 1 ? "" : "s"} waiting, retrying…`);
      setTimeout(pump, retryDelay);
      return;
    }
    if (!queue.length) setSaving("Saved");
    pump();
  }

  function applied(command, changed) {
    if (command.kind === "undo") redoStack.push(command.client_id);
    else if (command.kind === "redo") undoStack.push(command.client_id);
    else if (UNDOABLE.has(command.kind)) { undoStack.push(command.client_id); redoStack = []; }
    if (data.gold) refreshComparison(); // gold changed: what is kept and what is still disputed
    if (command.kind === "add") selectSpan(command.uid);
    // The span stays selected after its label, extent, attributes or code changed.
    else if (["relabel", "modify", "attribute_set", "concept_set"].includes(command.kind) && changed.includes(command.uid)
      && (selectedUid === command.uid || command.kind !== "attribute_set")) selectSpan(command.uid, false);
    if (command.kind === "submit") afterSubmit();
  }

  // ---- commands --------------------------------------------------------------------------------
  function labelSelection(label) {
    if (!selection) return;
    const [s, e] = selection;
    const uid = `c${pageSession.slice(1, 9)}${(++counter).toString(36)}`;
    send({ kind: "add", uid, label, fragments: [[u16ToCp(s), u16ToCp(e)]] });
    setSelection(null);
    keyAnchor = keyFocus = null;
    placeCaret(boundaryAt(e - 1) + 1);
  }
  function relabel(label) {
    const span = spans.get(selectedUid);
    if (span && span.label !== label) send({ kind: "relabel", uid: span.uid, label });
    else if (span && span.status === "pending") send({ kind: "accept", uid: span.uid });
  }
  // A relabel that would break relations: say which, in words, and let the physician drop them or
  // retype those that one relation type fits, in the same (undoable) edit.
  const relabelDialog = document.getElementById("relabel-relations");
  function offerRelationChoice(command, body) {
    const { broken, retypable } = body.relations;
    document.getElementById("relabel-relations-text").textContent = body.detail;
    const retype = relabelDialog.querySelector("[data-choice=retype]");
    retype.hidden = !retypable;
    retype.textContent = retypable === broken ? "Retype and relabel" : `Retype ${retypable}, drop ${broken - retypable}, relabel`;
    relabelDialog.querySelector("[data-choice=drop]").textContent = broken === 1 ? "Drop it and relabel" : `Drop the ${broken} and relabel`;
    relabelDialog.dataset.uid = command.uid;
    relabelDialog.dataset.label = command.label;
    relabelDialog.showModal();
    (retypable ? retype : relabelDialog.querySelector("[data-choice=drop]")).focus();
  }
  relabelDialog.addEventListener("click", (event) => {
    const choice = event.target.closest("[data-choice]")?.dataset.choice;
    if (!choice) return;
    relabelDialog.close();
    const { uid, label } = relabelDialog.dataset;
    if (choice !== "cancel" && spans.has(uid)) send({ kind: "relabel", uid, label, broken_relations: choice });
    noteText.focus({ preventScroll: true });
  });
  relabelDialog.addEventListener("close", () => noteText.focus({ preventScroll: true }));

  function neighbour(uid, step) {
    const order = orderedUids();
    const i = order.indexOf(uid);
    return order[i + step] || order[i - step] || null;
  }
  function removeSelected() {
    const span = spans.get(selectedUid);
    if (!span) return;
    const next = neighbour(span.uid, 1);
    send({ kind: span.status === "pending" ? "reject" : "delete", uid: span.uid });
    selectSpan(next);
  }
  function acceptSelected() {
    const span = spans.get(selectedUid);
    if (!span) return;
    if (span.status === "pending") send({ kind: "accept", uid: span.uid });
    const order = orderedUids();
    const next = order.slice(order.indexOf(span.uid) + 1).find((u) => spans.get(u).status === "pending");
    if (next) selectSpan(next);
  }
  // ---- accept all, submit, skip: in-page dialogs that say what will happen -------------------------
  function undecided(minimum = null) { // pending spans (at or above a confidence) and pending relations
    const spanUids = [...spans.values()].filter((s) => s.status === "pending"
      && (minimum === null || (s.confidence !== null && s.confidence >= minimum))).map((s) => s.uid);
    const relationUids = [...relations.values()].filter((r) => r.status === "pending"
      && (minimum === null || (spans.get(r.head)?.status !== "pending" || spanUids.includes(r.head)))).map((r) => r.uid);
    return { spanUids, relationUids };
  }
  const acceptDialog = document.getElementById("accept-all-dialog");
  const thresholdBox = document.getElementById("accept-threshold");
  function describeAccept() {
    const minimum = thresholdBox.value === "" ? null : Number(thresholdBox.value);
    const { spanUids, relationUids } = undecided(Number.isFinite(minimum) ? minimum : null);
    document.getElementById("accept-all-count").textContent = `${spanUids.length} pre-label${spanUids.length === 1 ? "" : "s"}`
      + (relationUids.length ? ` and ${relationUids.length} relation${relationUids.length === 1 ? "" : "s"}` : "") + " will be accepted.";
    acceptDialog.querySelector("[data-choice=accept]").disabled = !spanUids.length && !relationUids.length;
    return [...spanUids, ...relationUids];
  }
  function acceptAll() {
    const { spanUids, relationUids } = undecided();
    if (!spanUids.length && !relationUids.length) { toast("No undecided pre-labels."); return; }
    describeAccept();
    acceptDialog.showModal();
  }
  thresholdBox.addEventListener("input", describeAccept);
  acceptDialog.addEventListener("click", (event) => {
    const choice = event.target.closest("[data-choice]")?.dataset.choice;
    if (!choice) return;
    if (choice === "accept") { const uids = describeAccept(); if (uids.length) send({ kind: "accept_all", uids }); }
    acceptDialog.close();
  });
  acceptDialog.addEventListener("close", () => noteText.focus({ preventScroll: true }));

  const submitDialog = document.getElementById("submit-dialog");
  let focusAfterSubmitDialog = null; // where the focus goes when the dialog closes (else the note)
  function disputes() {
    // Gold: the comparison panel marks each stretch agreed, or disputed and settled (gold holds one of
    // its versions) or not yet.
    const rows = data.gold && comparisonEl
      ? [...comparisonEl.querySelectorAll("[data-testid=candidate][data-agreed=false]")] : [];
    return { disputed: rows.length, unsettled: rows.filter((row) => row.dataset.resolved !== "true") };
  }
  async function submit() {
    if (data.status !== "open") { toast(`This note is ${data.status}.`); return; }
    // Settled as gold is now, not as the panel last showed it (offline: as it last showed it).
    if (data.gold) await refreshComparison().catch(() => {});
    if (submitDialog.open) return;
    const { spanUids, relationUids } = undecided();
    const count = spanUids.length + relationUids.length;
    const { disputed, unsettled } = disputes();
    const words = [spanUids.length ? `${spanUids.length} pre-label${spanUids.length === 1 ? "" : "s"}` : "",
      relationUids.length ? `${relationUids.length} pre-labelled relation${relationUids.length === 1 ? "" : "s"}` : ""].filter(Boolean).join(" and ");
    const open = unsettled.length
      ? `${unsettled.length} of ${disputed} dispute${disputed === 1 ? "" : "s"} ${unsettled.length === 1 ? "is" : "are"} not settled yet.`
      : "";
    document.getElementById("submit-text").textContent = count
      ? `${words} ${count === 1 ? "is" : "are"} still undecided. Accept them, reject them, or go back to the first one.`
        + (data.require_decided ? " This study needs every pre-label decided before a note is submitted." : "")
        + " The report counts a pre-label left undecided as undecided, never as kept."
        + (open ? ` ${open}` : "")
      : open
        ? `${open} Gold holds none of the physicians' versions there. Go to the first to settle it, or submit anyway.`
        : "Submit this note? It is then closed for changes.";
    submitDialog.dataset.undecided = String(count);
    submitDialog.dataset.unsettled = String(unsettled.length);
    submitDialog.querySelectorAll("[data-when=undecided]").forEach((b) => { b.hidden = !count; });
    submitDialog.querySelectorAll("[data-when=unsettled]").forEach((b) => { b.hidden = !unsettled.length; });
    const confirm = submitDialog.querySelector("[data-choice=submit]");
    confirm.hidden = count > 0;
    confirm.textContent = unsettled.length ? "Submit anyway" : "Submit";
    confirm.classList.toggle("primary", !unsettled.length);
    submitDialog.querySelector("[data-choice=accept]").hidden = !count;
    submitDialog.querySelector("[data-choice=reject]").hidden = !count;
    submitDialog.showModal();
    submitDialog.querySelector(count ? "[data-choice=first]" : unsettled.length ? "[data-choice=first-dispute]" : "[data-choice=submit]").focus();
  }
  function goToFirstDispute() {
    const row = disputes().unsettled[0];
    if (!row) return;
    const show = row.querySelector("[data-show-start]");
    if (show) setSelection([cpToU16(Number(show.dataset.showStart)), cpToU16(Number(show.dataset.showEnd))]);
    row.classList.add("is-target"); // until the panel is next refreshed
    row.scrollIntoView({ block: "center" });
    focusAfterSubmitDialog = row.querySelector("[data-testid=keep]") || show;
  }
  submitDialog.addEventListener("click", (event) => {
    const choice = event.target.closest("[data-choice]")?.dataset.choice;
    if (!choice) return;
    submitDialog.close();
    const { spanUids, relationUids } = undecided();
    if (choice === "accept") { send({ kind: "accept_all", uids: [...spanUids, ...relationUids] }); send({ kind: "submit" }); }
    else if (choice === "reject") { send({ kind: "reject_all", uids: [...spanUids, ...relationUids] }); send({ kind: "submit" }); }
    else if (choice === "submit") send({ kind: "submit" });
    else if (choice === "first-dispute") goToFirstDispute();
    else if (choice === "first") {
      const first = orderedUids().find((u) => spans.get(u).status === "pending");
      if (first) { setSelection(null); selectSpan(first); }
      else if (relationUids.length) selectRelation(relationUids[0]);
    }
  });
  submitDialog.addEventListener("close", () => {
    const target = focusAfterSubmitDialog;
    focusAfterSubmitDialog = null;
    (target || noteText).focus({ preventScroll: true });
  });
  function afterSubmit() { if (data.may_reopen) toast("Submitted. Reopen it if you need to change it."); }

  const skipDialog = document.getElementById("skip-dialog");
  const skipReason = document.getElementById("skip-reason");
  function openSkip() {
    if (!skipDialog) return;
    if (data.status !== "open") { toast(`This note is ${data.status}.`); return; }
    skipReason.value = "";
    document.getElementById("skip-problem").hidden = true;
    skipDialog.showModal();
    skipReason.focus();
  }
  if (skipDialog) skipDialog.addEventListener("submit", (event) => {
    event.preventDefault();
    if (event.submitter && event.submitter.value === "cancel") { skipDialog.close(); return; }
    const reason = skipReason.value.trim();
    if (!reason) { document.getElementById("skip-problem").hidden = false; skipReason.focus(); return; }
    skipDialog.close();
    send({ kind: "skip", text: reason });
  });
  function resize(edge, step) { // move the start or end of the selected span by one token
    const span = spans.get(selectedUid);
    if (!span) return;
    if (span.fragments.length !== 1) { toast("Resize a discontinuous span by deleting and re-adding it."); return; }
    let [s, e] = [cpToU16(span.fragments[0][0]), cpToU16(span.fragments[0][1])];
    if (edge === "end") {
      const i = tokenAt(e - 1);
      if (step > 0 && i + 1 < tokens.length) e = tokens[i + 1][1];
      if (step < 0) { const j = tokenAt(e - 1); if (j > 0 && tokens[j - 1][1] > s) e = tokens[j - 1][1]; }
    } else {
      const i = tokenAt(s);
      if (step < 0 && i > 0) s = tokens[i - 1][0];
      if (step > 0 && i + 1 < tokens.length && tokens[i + 1][0] < e) s = tokens[i + 1][0];
    }
    const fragments = [[u16ToCp(s), u16ToCp(e)]];
    if (fragments[0][0] !== span.fragments[0][0] || fragments[0][1] !== span.fragments[0][1]) {
      send({ kind: "modify", uid: span.uid, fragments });
    }
  }
  function undo() { const target = undoStack.pop(); if (target) send({ kind: "undo", target }); else toast("Nothing to undo."); }
  function redo() { const target = redoStack.pop(); if (target) send({ kind: "redo", target }); else toast("Nothing to redo."); }
  // The caret: a place between two words (caret = index of the word after it). A click puts it there,
  // a selection or a selected span leaves it at their end, and Esc keeps it where it is.
  let caret = 0;
  const caretMark = document.createElement("div");
  caretMark.className = "caret-mark";
  caretMark.dataset.testid = "caret";
  layer.appendChild(caretMark);
  function boundaryAt(u) { // the caret place at or after UTF-16 offset u
    let lo = 0, hi = tokens.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (tokens[mid][1] <= u) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function placeCaret(boundary) {
    caret = Math.max(0, Math.min(tokens.length, boundary));
    noteText.dataset.caret = String(caret);
    const at = caret < tokens.length ? tokens[caret][0] : text.length;
    const rects = at < text.length ? rectsOf(at, Math.min(at + 1, text.length)) : (text.length ? rectsOf(text.length - 1, text.length) : []);
    const r = rects[0];
    caretMark.hidden = !r;
    if (!r) return;
    const [ox, oy] = origin();
    caretMark.style.left = `${(at < text.length ? r.left : r.right) - ox - 1}px`;
    caretMark.style.top = `${r.top - oy}px`;
    caretMark.style.height = `${r.height}px`;
  }
  function keyboardSelect(step, extend) {
    if (!tokens.length) return;
    if (keyFocus === null) {
      // The first arrow takes the word after the caret (→) or before it (←).
      keyAnchor = Math.max(0, Math.min(tokens.length - 1, step > 0 ? caret : caret - 1));
      keyFocus = keyAnchor - step;
    }
    keyFocus = Math.max(0, Math.min(tokens.length - 1, keyFocus + step));
    if (!extend) keyAnchor = keyFocus;
    const a = Math.min(keyAnchor, keyFocus), b = Math.max(keyAnchor, keyFocus);
    setSelection([tokens[a][0], tokens[b][1]]);
    placeCaret(keyFocus >= keyAnchor ? keyFocus + 1 : keyFocus);
    if (selectionMarks[0]) selectionMarks[0].scrollIntoView({ block: "nearest" });
  }

  // ---- mouse -----------------------------------------------------------------------------------
  function offsetAt(x, y) {
    const range = document.caretRangeFromPoint ? document.caretRangeFromPoint(x, y) : null;
    if (range && range.startContainer === textNode) return range.startOffset;
    const pos = document.caretPositionFromPoint ? document.caretPositionFromPoint(x, y) : null;
    return pos && pos.offsetNode === textNode ? pos.offset : null;
  }
  function spansAt(u) {
    const cp = u16ToCp(u);
    return [...spans.values()].filter((s) => s.fragments.some(([a, b]) => a <= cp && cp < b))
      .sort((x, y) => (bounds(x)[1] - bounds(x)[0]) - (bounds(y)[1] - bounds(y)[0]));
  }
  let lastClick = null;
  noteText.addEventListener("mouseup", (event) => {
    const sel = window.getSelection();
    if (sel && !sel.isCollapsed && sel.anchorNode === textNode && sel.focusNode === textNode) {
      const s = Math.min(sel.anchorOffset, sel.focusOffset), e = Math.max(sel.anchorOffset, sel.focusOffset);
      const snapped = snap(s, e);
      sel.removeAllRanges();
      keyAnchor = keyFocus = null;
      setSelection(snapped);
      if (snapped) placeCaret(boundaryAt(snapped[1] - 1) + 1);
      return;
    }
    const u = offsetAt(event.clientX, event.clientY);
    if (u === null) return;
    keyAnchor = keyFocus = null;
    placeCaret(boundaryAt(u));
    const here = spansAt(Math.min(u, text.length - 1));
    if (!here.length) { selectSpan(null); setSelection(null); return; }
    // clicking the same place again cycles through the spans stacked there
    const again = lastClick && lastClick.u === u ? (lastClick.i + 1) % here.length : 0;
    lastClick = { u, i: again };
    setSelection(null);
    if (linking) { finishLink(here[again].uid); return; }
    selectSpan(here[again].uid, false);
  });
  let hoverTimer = null;
  noteText.addEventListener("mousemove", (event) => {
    if (hoverTimer) return;
    hoverTimer = setTimeout(() => {
      hoverTimer = null;
      const u = offsetAt(event.clientX, event.clientY);
      const here = u === null ? [] : spansAt(Math.min(u, text.length - 1));
      if (!here.length) { tooltip.hidden = true; return; }
      tooltip.textContent = here.map((s) => s.label + (s.status === "pending" ? " (pre-label)" : "")).join(" · ");
      tooltip.style.left = `${event.clientX + 12}px`;
      tooltip.style.top = `${event.clientY + 16}px`;
      tooltip.hidden = false;
    }, 60);
  });
  noteText.addEventListener("mouseleave", () => { tooltip.hidden = true; });
  document.getElementById("span-list-container").parentElement.addEventListener("click", (event) => {
    const li = event.target.closest("#span-list > li");
    if (li && linking) { finishLink(li.dataset.uid); return; }
    if (li) { setSelection(null); selectSpan(li.dataset.uid); noteText.focus({ preventScroll: true }); }
  });
  document.querySelector(".palette").addEventListener("click", (event) => {
    const button = event.target.closest(".palette-button");
    if (!button) return;
    if (data.status !== "open") { toast("This note is closed for changes."); return; }
    if (selection) labelSelection(button.dataset.label);
    else if (selectedUid) relabel(button.dataset.label);
    else toast("Select text or a span first.");
    noteText.focus({ preventScroll: true });
  });
  document.querySelector(".editor-actions").addEventListener("click", (event) => {
    const action = event.target.closest("button")?.dataset.action;
    if (action === "undo") undo();
    else if (action === "redo") redo();
    else if (action === "accept-all") acceptAll();
    else if (action === "guidelines") document.getElementById("guidelines").showModal();
    else if (action === "skip") openSkip();
    else if (action === "submit") submit();
    else if (action === "reopen") send({ kind: "reopen" });
  });

  // ---- adjudication (a lead's gold set): keep a physician's version, or keep it as ambiguous -------
  const comparisonEl = document.getElementById("comparison");
  async function refreshComparison() {
    if (!comparisonEl) return;
    const query = comparisonEl.dataset.hideNames === "true" ? "?hide_names=1" : "";
    const response = await fetch(`${base}/comparison${query}`, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    if (response.ok) comparisonEl.innerHTML = await response.text();
  }
  if (comparisonEl) comparisonEl.addEventListener("click", (event) => {
    const adopt = event.target.closest("[data-adopt]");
    const ambiguous = event.target.closest("[data-ambiguous]");
    const show = event.target.closest("[data-show-start]");
    if (show) { // select the stretch in the note, where a label key marks it in gold
      setSelection([cpToU16(Number(show.dataset.showStart)), cpToU16(Number(show.dataset.showEnd))]);
      if (selectionMarks[0]) selectionMarks[0].scrollIntoView({ block: "center" });
      noteText.focus({ preventScroll: true });
    } else if (adopt) {
      send({ kind: "adopt", source_set: Number(adopt.dataset.sourceSet), source_uid: adopt.dataset.sourceUid,
        value: adopt.hasAttribute("data-ambiguous-keep") ? 1 : null });
    } else if (ambiguous) send({ kind: "ambiguous", uid: ambiguous.dataset.ambiguous, value: ambiguous.dataset.value ? 1 : null });
  });
  const noteBox = document.getElementById("set-note");
  let savedNote = noteBox.value;
  noteBox.addEventListener("change", () => {
    if (noteBox.value !== savedNote) { savedNote = noteBox.value; send({ kind: "note", text: noteBox.value }); }
  });

  // ---- keyboard --------------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target.closest("textarea, input, select, dialog") || document.querySelector("dialog[open]")) return;
    const key = event.key;
    // On a button or a link, Enter and Space press it and Tab moves on, as everywhere else: the
    // editor's own meaning of those keys (accept, next span) holds in the note text.
    const control = target.closest("button, a[href], summary, [tabindex]:not([tabindex='-1'])");
    if (control && control !== noteText && (key === "Enter" || key === " " || key === "Tab")) return;
    const ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && key.toLowerCase() === "z" && !event.shiftKey) { event.preventDefault(); undo(); return; }
    if (ctrl && (key.toLowerCase() === "y" || (key.toLowerCase() === "z" && event.shiftKey))) { event.preventDefault(); redo(); return; }
    if (ctrl || (event.altKey && !event.shiftKey)) return;
    if (key === "?") { event.preventDefault(); document.getElementById("guidelines").showModal(); return; }
    if (key === "/" && paletteFilter) { event.preventDefault(); paletteFilter.focus(); return; }
    if (key === "Escape") { // clear the selection; the caret stays where it is
      cancelLink(); setSelection(null); selectSpan(null); selectRelation(null); keyAnchor = keyFocus = null;
      return;
    }
    if (selectedRelation && !selectedUid && (key === "Delete" || key === "Backspace" || key === "Enter")) {
      event.preventDefault();
      const relation = relations.get(selectedRelation);
      const kind = key === "Enter" ? (relation.status === "pending" ? "accept" : null) : (relation.status === "pending" ? "reject" : "delete");
      if (kind) send({ kind: `relation_${kind}`, uid: relation.uid });
      return;
    }
    if (event.shiftKey && key === "R" && data.relation_types.length) { event.preventDefault(); startLink(); return; }
    if (event.shiftKey && key === "A") {
      const first = attributeBox.querySelector("select");
      if (first) { event.preventDefault(); first.focus(); }
      return;
    }
    if (event.shiftKey && key === "C" && conceptSearch) {
      if (!selectedUid) { toast("Select a span to code first."); return; }
      event.preventDefault();
      conceptSearch.focus();
      return;
    }
    if (key === "Enter" && linking && !event.shiftKey) { event.preventDefault(); finishLink(selectedUid); return; }
    if (key === "Tab") {
      const order = orderedUids();
      if (!order.length) return;
      event.preventDefault();
      const i = selectedUid ? order.indexOf(selectedUid) : -1;
      const next = event.shiftKey ? (i <= 0 ? order.length - 1 : i - 1) : (i + 1) % order.length;
      setSelection(null);
      keyAnchor = keyFocus = null;
      selectSpan(order[next]);
      placeCaret(boundaryAt(bounds(spans.get(order[next]))[1] - 1) + 1); // arrows go on after it
      return;
    }
    if (key === "Enter") { event.preventDefault(); if (event.shiftKey) acceptAll(); else acceptSelected(); return; }
    if (key === "Delete" || key === "Backspace") { event.preventDefault(); removeSelected(); return; }
    if (key === "ArrowRight" || key === "ArrowLeft") {
      const step = key === "ArrowRight" ? 1 : -1;
      event.preventDefault();
      if (selectedUid && event.shiftKey) { resize(event.altKey ? "start" : "end", step); return; }
      keyboardSelect(step, event.shiftKey);
      return;
    }
    if (key.length === 1 && !event.altKey) {
      const label = hotkeys.get(key.toLowerCase());
      if (!label) return;
      event.preventDefault();
      if (selection) labelSelection(label);
      else if (selectedUid) relabel(label);
    }
  });

  // ---- time: open, close, visible, hidden, activity -----------------------------------------------
  const localTimes = []; // monotonic times of this page's events, for the timer
  let timeCounter = 0;
  let unsentTime = [];
  let hidden = document.visibilityState === "hidden";
  const hiddenSince = [];
  function timeEvent(kind) {
    const now = performance.now();
    localTimes.push(now);
    if (kind === "hidden") hiddenSince.push([now, null]);
    if (kind === "visible" && hiddenSince.length) hiddenSince[hiddenSince.length - 1][1] = now;
    unsentTime.push({ kind, client_id: `${pageSession}-t${++timeCounter}`, monotonic_ms: now, wall_time_ms: Date.now() });
  }
  async function flushTime() {
    if (!unsentTime.length) return;
    const batch = unsentTime;
    unsentTime = [];
    try {
      const response = await fetch(`${base}/events`, {
        method: "POST", credentials: "same-origin", keepalive: true,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ page_session: pageSession, events: batch }),
      });
      if (!response.ok && response.status >= 500) unsentTime = batch.concat(unsentTime);
    } catch (error) {
      unsentTime = batch.concat(unsentTime); // sent again later with the same ids: stored once
    }
  }
  let lastActivity = -Infinity;
  function activity() {
    const now = performance.now();
    if (hidden || now - lastActivity < 5000) return;
    lastActivity = now;
    timeEvent("activity");
    flushTime();
  }
  ["keydown", "pointerdown", "wheel", "scroll"].forEach((type) => document.addEventListener(type, activity, { passive: true, capture: true }));
  document.addEventListener("selectionchange", activity);
  document.addEventListener("visibilitychange", () => {
    hidden = document.visibilityState === "hidden";
    timeEvent(hidden ? "hidden" : "visible");
    flushTime();
  });
  window.addEventListener("pagehide", () => {
    timeEvent("close");
    const form = new FormData();
    form.append("csrf_token", csrf);
    form.append("payload", JSON.stringify({ page_session: pageSession, events: unsentTime }));
    if (navigator.sendBeacon(`${base}/events`, form)) unsentTime = [];
  });

  function activeSeconds() { // this page's active time, by the rule of shared/design/metrics.md
    const threshold = data.idle_threshold_seconds * 1000;
    const times = localTimes.slice().sort((a, b) => a - b);
    const now = performance.now();
    if (!hidden) times.push(now);
    let total = 0;
    for (let i = 1; i < times.length; i++) {
      const start = times[i - 1];
      const wasHidden = hiddenSince.some(([a, b]) => start >= a && (b === null || start < b));
      if (!wasHidden) total += Math.min(times[i] - start, threshold);
    }
    return total / 1000;
  }
  function tick() {
    const seconds = Math.floor(data.previous_active_seconds + activeSeconds());
    timerEl.textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  }

  // ---- the palette: type to filter; Enter applies the first label left ---------------------------
  const paletteFilter = document.getElementById("palette-filter");
  function visibleLabels() { return [...document.querySelectorAll(".palette-button")].filter((b) => !b.hidden); }
  if (paletteFilter) {
    paletteFilter.addEventListener("input", () => {
      const query = paletteFilter.value.trim().toLowerCase();
      document.querySelectorAll(".palette-button").forEach((b) => {
        const name = b.dataset.label.toLowerCase();
        b.hidden = Boolean(query) && !name.includes(query) && (shortName.get(b.dataset.label) || "").toLowerCase() !== query;
      });
      document.getElementById("palette-empty").hidden = visibleLabels().length > 0;
    });
    paletteFilter.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        const first = visibleLabels()[0];
        if (!first) return;
        if (selection) labelSelection(first.dataset.label);
        else if (selectedUid) relabel(first.dataset.label);
        else { toast("Select text or a span first."); return; }
        paletteFilter.value = "";
        paletteFilter.dispatchEvent(new Event("input"));
        noteText.focus({ preventScroll: true });
      } else if (event.key === "Escape") {
        paletteFilter.value = "";
        paletteFilter.dispatchEvent(new Event("input"));
        noteText.focus({ preventScroll: true });
      }
    });
  }

  // ---- compact or full labels, remembered for the physician ----------------------------------------
  const displayToggle = document.getElementById("display-toggle");
  function showDisplay() {
    displayToggle.setAttribute("aria-pressed", String(display === "compact"));
    displayToggle.textContent = display === "compact" ? "Full labels" : "Compact labels";
  }
  displayToggle.addEventListener("click", () => {
    display = display === "compact" ? "full" : "compact";
    showDisplay();
    layout();
    redraw();
    drawSelection();
    placeCaret(caret);
    fetch("/account/editor-display", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify({ display }) })
      .catch(() => {}); // only a preference: the page works the same when it is not saved
    noteText.focus({ preventScroll: true });
  });
  showDisplay();

  // ---- another tab: the set's version, looked at every few seconds ----------------------------------
  async function checkVersion() {
    if (inFlight || queue.length || document.visibilityState !== "visible") return;
    try {
      const response = await fetch(`${base}/version`, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok || inFlight || queue.length) return;
      const seen = await response.json();
      if (seen.version === version) return;
      const keep = selectedUid;
      await reloadList();
      if (keep && spans.has(keep)) selectSpan(keep, false);
      toast("This note was changed in another window; it now shows those changes.");
    } catch (error) { /* offline: the next look will tell */ }
  }
  setInterval(checkVersion, data.poll_ms || 3000);

  // ---- start -----------------------------------------------------------------------------------
  readRelations();
  loadList(document);
  placeCaret(0);
  setStatus(data.status);
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => { redraw(); drawSelection(); placeCaret(caret); }, 100); });
  timeEvent("open");
  flushTime();
  setInterval(tick, 1000);
  setInterval(flushTime, 10000);
  tick();
  noteText.focus({ preventScroll: true });
  window.clinannEditor = { // for tests and benchmarks: the page's own view of its state
    ready: true, version: () => version, pending: () => queue.length,
    pageSession, cpToU16, u16ToCp, flushTime,
  };
  document.body.dataset.editorReady = "true";
})();
