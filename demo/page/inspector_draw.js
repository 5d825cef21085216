// The inspector's own boxes: drawing one on the picture. Appended to demo/page/inspector.js (one
// `js_on_load` body, so they share its state and functions); its state is `var`, so that the first
// render, which runs before these lines, finds it declared (and keeps what it set).
//
// "Draw a box" (the next drag draws, once; Escape cancels) or Shift+drag at any time, so a plain drag
// always pans. A box of at least 4 screen pixels a side is sent as trigger("select", {index: "drawn",
// value: [x1, y1, x2, y2]}) in whole picture pixels; the server keeps it (`Picks.drawn`) and sends it
// back as `props.value.drawn`, which `draw()` shows dashed and selectable like the model's boxes, for
// "Ask about this box" and "Zoom into this box".

var drawButton = $(".qi-draw");

// Declared without a value: the first render (above) may have set them already.
var drawing; // "Draw a box" is on: the next drag draws
var sketch; // the box being drawn, picture pixels: {x0, y0, x1, y1}
var sketchNode; // its outline, made by draw()

function drawSketch() {
  if (!sketchNode) return;
  if (!sketch) {
    sketchNode.setAttribute("hidden", "");
    return;
  }
  sketchNode.removeAttribute("hidden");
  sketchNode.setAttribute("x", sx(Math.min(sketch.x0, sketch.x1)));
  sketchNode.setAttribute("y", sy(Math.min(sketch.y0, sketch.y1)));
  sketchNode.setAttribute("width", Math.abs(sketch.x1 - sketch.x0) * view.s);
  sketchNode.setAttribute("height", Math.abs(sketch.y1 - sketch.y0) * view.s);
}

function setDrawing(on) {
  drawing = on;
  root.classList.toggle("qi-drawing", on);
  drawButton.setAttribute("aria-pressed", String(on));
}

function toPicture(event) {
  // The pointer in picture pixels, held inside the picture.
  const rect = viewport.getBoundingClientRect();
  const x = (event.clientX - rect.left - view.x) / view.s;
  const y = (event.clientY - rect.top - view.y) / view.s;
  return [Math.min(Math.max(x, 0), v.width), Math.min(Math.max(y, 0), v.height)];
}


function finishSketch() {
  // A drawn box of at least 4 screen pixels a side (else it was a click) becomes the selected box.
  const box = [Math.min(sketch.x0, sketch.x1), Math.min(sketch.y0, sketch.y1), Math.max(sketch.x0, sketch.x1), Math.max(sketch.y0, sketch.y1)];
  sketch = null;
  drawSketch();
  if ((box[2] - box[0]) * view.s < 4 || (box[3] - box[1]) * view.s < 4) return false;
  const whole = box.map((n) => Math.round(n));
  if (whole[2] <= whole[0] || whole[3] <= whole[1]) return false;
  setDrawing(false);
  v = { ...v, drawn: whole };
  selected = "drawn";
  draw();
  apply();
  mark();
  trigger("select", { index: "drawn", value: whole, selected: true });
  return true;
}


drawButton.addEventListener("click", () => {
  if (v.width) setDrawing(!drawing);
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && (drawing || sketch)) {
    sketch = null;
    drawSketch();
    setDrawing(false);
  }
});

