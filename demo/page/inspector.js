// The inspector's picture view: runs as the `js_on_load` of a gr.HTML whose template is static
// (see demo/page/inspector_ui.py), so Gradio never re-renders this DOM; it is redrawn from
// `props.value` (made by demo/views/inspector.py) whenever that changes. Model text (labels, the
// answer) is only ever set as textContent, never parsed as HTML.
//
// The picture is shown at full resolution inside a viewport: the wheel zooms around the
// pointer, dragging pans, the buttons zoom in, out, to fit and to 1:1. Boxes, points and labels
// are drawn over it in screen pixels (an SVG and tags laid over the viewport), so they keep
// their width and size at any zoom. Hovering a box (the smallest one under the pointer) or its
// span in the answer highlights both; a click selects it and tells the server
// (trigger("select")), which highlights its row in the list.
//
// Drawing a box of one's own ("Draw a box", Shift+drag): demo/page/inspector_draw.js, appended to
// this script; `draw()` shows the drawn box the server sends back (`props.value.drawn`).

const root = element.querySelector(".qi");
const $ = (selector) => root.querySelector(selector);
const viewport = $(".qi-viewport");
const stage = $(".qi-stage");
const img = $(".qi-img");
const svg = $(".qi-overlay");
const tags = $(".qi-tags");
const tip = $(".qi-tip");
const answer = $(".qi-answer");
const SVG = "http://www.w3.org/2000/svg";
const MAX_ZOOM = 24;

let v = {};
let view = { s: 1, x: 0, y: 0 };
let fitted = true;
let hot = null;
let selected = null;
let picture = null;
let drag = null;
let shapes = [];

function el(tag, cls, parent, ns) {
  const node = ns ? document.createElementNS(SVG, tag) : document.createElement(tag);
  if (cls) node.setAttribute("class", cls);
  if (parent) parent.appendChild(node);
  return node;
}

function fitScale() {
  if (!v.width) return 1;
  return Math.min(viewport.clientWidth / v.width, viewport.clientHeight / v.height);
}

function fitHeight() {
  // As tall as the picture is at the viewport's width, within 300 px and 70% of the window.
  const wanted = v.width ? (viewport.clientWidth * v.height) / v.width : 300;
  const height = `${Math.round(Math.min(Math.max(wanted, 300), window.innerHeight * 0.7))}px`;
  if (viewport.style.height !== height) viewport.style.height = height;
}

function fit() {
  fitHeight();
  const s = fitScale();
  view = { s, x: (viewport.clientWidth - v.width * s) / 2, y: (viewport.clientHeight - v.height * s) / 2 };
  fitted = true;
  apply();
}

function zoomAt(factor, cx, cy) {
  const s = Math.min(MAX_ZOOM, Math.max(fitScale() / 2, view.s * factor));
  view = { s, x: cx - ((cx - view.x) * s) / view.s, y: cy - ((cy - view.y) * s) / view.s };
  fitted = false;
  apply();
}

function apply() {
  stage.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.s})`;
  $(".qi-zoom").textContent = `${Math.round(view.s * 100)}%`;
  layout();
  drawSketch();
  if (hot) mark();
}

const sx = (x) => view.x + x * view.s;
const sy = (y) => view.y + y * view.s;

function layout() {
  for (const shape of shapes) {
    const { item, node, tag } = shape;
    if (item.point) {
      node.setAttribute("cx", sx(item.point[0]));
      node.setAttribute("cy", sy(item.point[1]));
    } else if (item.quad) {
      node.setAttribute("points", item.quad.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "));
    } else {
      node.setAttribute("x", sx(item.box[0]));
      node.setAttribute("y", sy(item.box[1]));
      node.setAttribute("width", Math.max(1, (item.box[2] - item.box[0]) * view.s));
      node.setAttribute("height", Math.max(1, (item.box[3] - item.box[1]) * view.s));
    }
    if (tag) {
      const [x, y] = item.point ? [item.point[0], item.point[1]] : item.quad ? item.quad[0] : [item.box[0], item.box[1]];
      const left = Math.min(Math.max(sx(x) + (item.point ? 8 : 0), 0), viewport.clientWidth - tag.offsetWidth);
      let top = sy(y) - tag.offsetHeight - (item.point ? 4 : 0);
      if (top < 0) top = sy(y) + 2;
      tag.style.transform = `translate(${left}px, ${top}px)`;
    }
  }
}

function itemText(item) {
  const round = (values) => `(${values.map((n) => Math.round(n)).join(", ")})`;
  const where = item.point ? round(item.point) : round(item.box);
  const kind = item.kind || "reference";
  if (kind === "drawn") return `your box ${where} px`;
  let text = `${item.id[0] === "r" ? "r" : "#"}${item.n} ${item.label || "(no label)"} · ${kind} ${where} px`;
  if (item.status) text += ` · ${item.status}${item.iou != null ? ` IoU ${item.iou.toFixed(2)}` : ""}`;
  return text;
}

function draw() {
  svg.textContent = "";
  tags.textContent = "";
  shapes = [];
  const references = v.references || [];
  const items = v.items || [];
  for (const ref of references) {
    const node = el("rect", `qi-shape qi-ref qi-${ref.status}`, svg, true);
    node.dataset.id = ref.id;
    const tag = v.labels && ref.status === "missed" ? el("div", "qi-tag qi-tag-ref", tags) : null;
    if (tag) {
      tag.textContent = `r${ref.n} ${ref.label || ""}`.trim();
      tag.dataset.id = ref.id;
    }
    shapes.push({ item: ref, node, tag });
  }
  for (const item of items) {
    const kind = item.point ? "circle" : item.quad ? "polygon" : "rect";
    const node = el(kind, `qi-shape qi-${item.kind}${item.status ? ` qi-${item.status}` : ""}`, svg, true);
    node.dataset.id = item.id;
    node.style.stroke = item.color;
    if (item.point) {
      node.setAttribute("r", 6);
      node.style.fill = item.color;
    }
    let tag = null;
    if (v.labels) {
      tag = el("div", "qi-tag", tags);
      tag.textContent = `${item.n} ${item.label}`.trim();
      tag.style.background = item.color;
      tag.style.color = item.ink;
      tag.dataset.id = item.id;
    }
    shapes.push({ item, node, tag });
  }
  if (v.drawn && v.width) {
    const item = { id: "drawn", n: "", label: "your box", kind: "drawn", color: "#22d3ee", ink: "#000", box: v.drawn };
    const node = el("rect", "qi-shape qi-drawn", svg, true);
    node.dataset.id = item.id;
    const tag = el("div", "qi-tag qi-tag-drawn", tags);
    tag.textContent = item.label;
    tag.dataset.id = item.id;
    shapes.push({ item, node, tag });
  }
  sketchNode = el("rect", "qi-sketch", svg, true);
  sketchNode.setAttribute("hidden", "");
}

function drawAnswer() {
  answer.textContent = "";
  for (const piece of v.answer || []) {
    const node = el("span", piece.marker ? "qi-marker" : "", answer);
    node.textContent = piece.t;
    if (piece.id) {
      node.classList.add("qi-span");
      node.dataset.id = piece.id;
      if (!piece.here) node.classList.add("qi-elsewhere");
      const item = (v.items || []).find((i) => i.id === piece.id);
      if (item) node.style.setProperty("--c", item.color);
    }
  }
  answer.hidden = !(v.answer || []).length;
}

function mark() {
  root.classList.toggle("qi-focus", Boolean(hot || selected));
  for (const node of root.querySelectorAll("[data-id]")) {
    node.classList.toggle("hot", node.dataset.id === hot);
    node.classList.toggle("sel", node.dataset.id === selected);
  }
  const shape = shapes.find((s) => s.item.id === hot);
  tip.hidden = !shape;
  if (shape) {
    tip.textContent = itemText(shape.item);
    const [x, y] = shape.item.point || (shape.item.quad ? shape.item.quad[0] : [shape.item.box[0], shape.item.box[3]]);
    const left = Math.min(Math.max(sx(x), 4), viewport.clientWidth - tip.offsetWidth - 4);
    const top = Math.min(Math.max(sy(y) + 6, 4), viewport.clientHeight - tip.offsetHeight - 4);
    tip.style.transform = `translate(${left}px, ${top}px)`;
  }
}

function setHot(id) {
  if (id === hot) return;
  hot = id;
  mark();
}

function select(id) {
  selected = id === selected ? null : id;
  mark();
  const shape = shapes.find((s) => s.item.id === id);
  trigger("select", { index: selected, value: shape ? shape.item.label : null, selected: selected !== null });
}

function scrollToSpan(id) {
  const span = answer.querySelector(`[data-id="${id}"]`);
  if (span) answer.scrollTop = span.offsetTop - answer.offsetTop - answer.clientHeight / 2;
}

function render() {
  v = props.value || {};
  const message = $(".qi-message");
  message.textContent = v.message || "";
  message.hidden = !v.message;
  $(".qi-title").textContent = v.title || "";
  $(".qi-live").hidden = !v.streaming;
  $(".qi-about").textContent = v.about || "";
  $(".qi-truth").textContent = v.truth || "";
  $(".qi-truth").hidden = !v.truth;
  $(".qi-legend").hidden = !(v.references || []).length && !(v.items || []).some((i) => i.status);
  const src = v.picture ? v.picture.url : null;
  img.hidden = !src;
  const key = `${src}|${v.width}|${v.height}`;
  if (src && img.getAttribute("src") !== src) img.setAttribute("src", src);
  if (v.width) {
    stage.style.width = `${v.width}px`;
    stage.style.height = `${v.height}px`;
  }
  draw();
  drawAnswer();
  if (key !== picture) {
    picture = key;
    fit();
  } else {
    apply();
  }
  if (v.selected !== selected) {
    selected = v.selected || null;
    if (selected) scrollToSpan(selected);
  }
  mark();
  root.dataset.items = String((v.items || []).length);
}

function under(event) {
  const rect = viewport.getBoundingClientRect();
  const x = (event.clientX - rect.left - view.x) / view.s;
  const y = (event.clientY - rect.top - view.y) / view.s;
  const reach = 8 / view.s;
  let best = null;
  let bestArea = Infinity;
  for (const { item } of shapes) {
    let area;
    if (item.point) {
      const dx = item.point[0] - x;
      const dy = item.point[1] - y;
      area = dx * dx + dy * dy <= reach * reach ? 0 : Infinity;
    } else {
      const box = item.box;
      const inside = x >= box[0] - reach && x <= box[2] + reach && y >= box[1] - reach && y <= box[3] + reach;
      area = inside ? (box[2] - box[0]) * (box[3] - box[1]) : Infinity;
    }
    if (area < bestArea) {
      best = item;
      bestArea = area;
    }
  }
  return best;
}

viewport.addEventListener("wheel", (event) => {
  if (!v.width) return;
  event.preventDefault();
  const rect = viewport.getBoundingClientRect();
  zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
}, { passive: false });

viewport.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  viewport.setPointerCapture(event.pointerId);
  if ((drawing || event.shiftKey) && v.width) {
    const [x, y] = toPicture(event);
    sketch = { x0: x, y0: y, x1: x, y1: y };
    drawSketch();
    return;
  }
  drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y, moved: false };
});

viewport.addEventListener("pointermove", (event) => {
  if (sketch) {
    [sketch.x1, sketch.y1] = toPicture(event);
    drawSketch();
    return;
  }
  if (drag) {
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    if (drag.moved) {
      view = { s: view.s, x: drag.vx + dx, y: drag.vy + dy };
      fitted = false;
      apply();
      return;
    }
  }
  const item = under(event);
  setHot(item ? item.id : null);
});

viewport.addEventListener("pointerup", (event) => {
  if (sketch) {
    if (finishSketch()) return;
    const item = under(event); // too small to be a box: a click
    if (item) select(item.id);
    return;
  }
  const moved = drag && drag.moved;
  drag = null;
  if (!moved) {
    const item = under(event);
    if (item) select(item.id);
  }
});

viewport.addEventListener("pointerleave", () => setHot(null));
viewport.addEventListener("dblclick", (event) => {
  const rect = viewport.getBoundingClientRect();
  zoomAt(2, event.clientX - rect.left, event.clientY - rect.top);
});

answer.addEventListener("pointerover", (event) => {
  const span = event.target.closest(".qi-span");
  setHot(span ? span.dataset.id : null);
});
answer.addEventListener("pointerleave", () => setHot(null));
answer.addEventListener("click", (event) => {
  const span = event.target.closest(".qi-span");
  if (span && shapes.some((s) => s.item.id === span.dataset.id)) select(span.dataset.id);
});

root.querySelector(".qi-tools").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-zoom]");
  if (!button || !v.width) return;
  const cx = viewport.clientWidth / 2;
  const cy = viewport.clientHeight / 2;
  const action = button.dataset.zoom;
  if (action === "in") zoomAt(1.5, cx, cy);
  if (action === "out") zoomAt(1 / 1.5, cx, cy);
  if (action === "fit") fit();
  if (action === "one") zoomAt(1 / view.s, cx, cy);
});

new ResizeObserver(() => (fitted ? fit() : apply())).observe(viewport);
render();
watch("value", render);
