// The page's own behaviour, run once as the `js_on_load` of the intro (gr.HTML, `element`).
//
// Keyboard: the textbox has the focus on load (not on touch screens, where that would open the
// keyboard over the first screen) and gets it back after Send, Stop, attaching, an example and a
// preset; a preset's «placeholder» is selected so that typing replaces it; Escape stops an answer.
// Picture numbers: each attachment in the textbox shows the label it will have once sent
// ("Picture 3", "Video 2"), counting on from the conversation (`data-pictures`, `data-videos` on
// this element, from the chat's value). Screen readers: chat pictures get their "Picture N"
// alt text (Gradio 6.31's chatbot drops the messages' alt_text), the textbox and its buttons
// short names, chat messages their rendered text rather than raw Markdown. Pixel fields holding
// 0 (the model's default) show empty: Gradio's Number turns an empty value into 0 on the page.
// It knows nothing of the model; what it counts comes from the chat's value.

const root = element.closest("#intro") || element;
const touch = window.matchMedia("(pointer: coarse)").matches;
const PLACEHOLDER = /«[^»]*»/;
const labels = new Map(); // file url -> "Picture 2" (or "Picture 1, annotated"), from the chat's value
let counts = { pictures: 0, videos: 0 };
// Per row of the chat as Gradio 6.31 shows it: each part of each message is a row of its own (an
// answer is one message with a list of parts: demo/views/chat.py answer_message). Each row:
// { kind: "text" | "caption" | "file", alt (a file's alt text), card: null | "only" | "first" | "middle" | "last" (the rows of
// one answer), version: null or its turn's versions ({ turn, shown, count, question }), on its last row }.
let rows = [];

const textarea = () => document.querySelector("#message textarea");

function focusBox() {
  const box = textarea();
  if (box && document.activeElement !== box) box.focus({ preventScroll: true });
  return box;
}

// After an action that removes the focused button (Send becomes Stop and back), once the click is over.
function refocusSoon() {
  setTimeout(focusBox, 0);
}

function selectPlaceholder(box) {
  const found = PLACEHOLDER.exec(box.value);
  box.focus({ preventScroll: true });
  if (found) box.setSelectionRange(found.index, found.index + found[0].length);
  else box.setSelectionRange(box.value.length, box.value.length);
}

// A preset rewrites the textbox on the server: wait for the new text, then select its «object».
function afterPreset(before) {
  const started = performance.now();
  const poll = () => {
    const box = textarea();
    if (box && box.value !== before && PLACEHOLDER.test(box.value)) return selectPlaceholder(box);
    if (box && box.value !== before && performance.now() - started > 200) return selectPlaceholder(box);
    if (performance.now() - started < 5000) setTimeout(poll, 30);
  };
  poll();
}

document.addEventListener(
  "click",
  (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    if (target.closest("#message .submit-button, #message .stop-button, #restore")) refocusSoon();
    else if (target.closest("#chatbot .message-buttons button") && document.querySelector("#chatbot textarea.edit-textarea")) refocusSoon(); // an edit sent or cancelled
    else if (target.closest("#presets button")) afterPreset(textarea()?.value ?? "");
    else if (target.closest("#chatbot .example") && !touch) refocusSoon();
  },
  true,
);

// -- files over their size limit are refused when attached (the app refuses them on Send too) --------

function sizeText(mb) {
  return mb < 10 ? `${Number(mb.toPrecision(3))} MB` : `${Math.round(mb).toLocaleString("en")} MB`; // as limits._size
}

function tooBig(files) {
  const limits = document.querySelector("#qvc-limits")?.dataset;
  if (!limits) return [];
  const videos = (limits.videoExtensions || "").split(" ");
  const refused = [];
  for (const file of files || []) {
    const isVideo = videos.some((extension) => file.name.toLowerCase().endsWith(extension));
    const limit = Number(isVideo ? limits.videoMb : limits.imageMb);
    const mb = file.size / 2 ** 20;
    if (mb > limit) refused.push(`${file.name} is ${sizeText(mb)}, more than the ${sizeText(limit)} allowed for a ${isVideo ? "video" : "picture"}.`);
  }
  return refused;
}

function sayRefused(sentences) {
  let line = document.querySelector("#attach-refused");
  if (!line) {
    line = Object.assign(document.createElement("p"), { id: "attach-refused" });
    line.setAttribute("role", "alert");
    document.querySelector("#message")?.after(line);
  }
  line.textContent = `Not attached: ${sentences.join(" ")}`;
  line.hidden = false;
  clearTimeout(sayRefused.timer);
  sayRefused.timer = setTimeout(() => (line.hidden = true), 10000);
}

document.addEventListener(
  "change",
  (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.matches("#message input[type=file]")) return;
    const refused = tooBig(input.files);
    if (refused.length) {
      sayRefused(refused);
      const kept = new DataTransfer();
      for (const file of input.files) if (!tooBig([file]).length) kept.items.add(file);
      input.files = kept.files; // the others are attached as usual
      if (!kept.files.length) event.stopImmediatePropagation();
    }
    refocusSoon();
  },
  true,
);
for (const kind of ["drop", "paste"]) {
  document.addEventListener(
    kind,
    (event) => {
      if (!(event.target instanceof Element) || !event.target.closest("#message")) return;
      const refused = tooBig((kind === "drop" ? event.dataTransfer : event.clipboardData)?.files);
      if (refused.length) {
        event.preventDefault(); // none of them: the person drops or pastes the others again
        event.stopImmediatePropagation();
        sayRefused(refused);
      }
      refocusSoon();
    },
    true,
  );
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (document.activeElement?.closest('[aria-expanded="true"], .edit-textarea')) return; // Escape closes that first
  const stop = document.querySelector("#message .stop-button");
  if (!stop || stop.offsetParent === null) return;
  event.preventDefault();
  stop.click();
  refocusSoon();
});

// -- what the chat holds: counts and labels ------------------------------------------------------

function fileOf(part) {
  if (!part || typeof part !== "object") return null;
  if (part.file) return Array.isArray(part.file) ? part.file[0] : part.file;
  return null;
}

// Called with the Chatbot's value on every change (see demo/page/ui.py).
window.qvcChat = (messages) => {
  labels.clear();
  counts = { pictures: 0, videos: 0 };
  for (const message of messages || []) {
    const parts = Array.isArray(message.content) ? message.content : [message.content];
    for (const part of parts) {
      const file = fileOf(part);
      const label = part && part.alt_text;
      if (!file || !label) continue;
      if (file.url) labels.set(file.url, label);
      const number = /^(Picture|Video) (\d+)$/.exec(label);
      if (message.role === "user" && number) {
        const kind = number[1] === "Picture" ? "pictures" : "videos";
        counts[kind] = Math.max(counts[kind], Number(number[2]));
      }
    }
  }
  rows = chatRows(messages || []);
  root.dataset.pictures = String(counts.pictures);
  root.dataset.videos = String(counts.videos);
  schedule();
  window.qvcHistory?.changed(messages); // demo/page/history.js keeps the conversation
};

// -- fixes applied to the page as Gradio renders it ------------------------------------------------

function nameChatMedia() {
  for (const media of document.querySelectorAll("#chatbot img, #chatbot video")) {
    const url = media.currentSrc || media.src || media.querySelector("source")?.src;
    const label = labels.get(url) || labels.get(decodeURI(url || ""));
    if (!label) continue;
    if (media.tagName === "IMG" && media.alt !== label) media.alt = label;
    if (media.tagName === "VIDEO" && media.getAttribute("aria-label") !== label) media.setAttribute("aria-label", label);
  }
}

function labelThumbnails() {
  const next = { Picture: counts.pictures, Video: counts.videos };
  for (const item of document.querySelectorAll("#message .thumbnail-wrapper")) {
    const kind = item.querySelector("img") ? "Picture" : "Video";
    next[kind] += 1;
    const label = `${kind} ${next[kind]}`;
    let tag = item.querySelector(".qvc-label");
    if (!tag) {
      tag = document.createElement("span");
      tag.className = "qvc-label";
      tag.setAttribute("aria-hidden", "true"); // the wrapper's name says it
      item.append(tag);
    }
    if (tag.textContent !== label) tag.textContent = label;
    // Gradio makes each thumbnail a listitem of a container that also holds the upload button (not a
    // list): a named group ("Picture 3", holding its Remove button) is what it is.
    setAttributes(item, { role: "group", "aria-label": label });
    const remove = item.querySelector(".delete-button");
    if (remove) setAttributes(remove, { "aria-label": `Remove ${label}` });
  }
}

function nameControls() {
  const names = [
    ["#message textarea", "Message"],
    ["#message .submit-button", "Send"],
    ["#message .stop-button", "Stop the answer"],
    ["#message .upload-button", "Attach pictures or videos"],
  ];
  for (const [selector, name] of names) {
    const node = document.querySelector(selector);
    if (node) setAttributes(node, { "aria-label": name });
  }
  // The empty chat's examples are buttons in a "list" (which must hold list items): a named group.
  for (const group of document.querySelectorAll("#chatbot .examples")) setAttributes(group, { role: "group", "aria-label": "Examples" });
  // Accordion arrows are decoration: their names are their titles.
  for (const icon of document.querySelectorAll("button.label-wrap .icon")) icon.setAttribute("aria-hidden", "true");
}

// Gradio names every message div with its raw text ("user's message: **Picture 1** · …"):
// a screen reader then spells the Markdown markers and escapes. Its rendered text reads right.
// (textContent, not innerText: reading it costs no layout, which matters while an answer streams.)
function nameMessages() {
  for (const node of document.querySelectorAll("#chatbot div[data-testid=user], #chatbot div[data-testid=bot]")) {
    const who = node.dataset.testid === "user" ? "You" : "Model";
    const text = node.textContent.replace(/\s+/g, " ").trim();
    const media = node.querySelector("img, video");
    const label = media ? `${who}: ${media.alt || media.getAttribute("aria-label") || "attachment"}` : `${who}: ${text}`;
    setAttributes(node, { "aria-label": label });
  }
}

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (node.getAttribute(name) !== value) node.setAttribute(name, value);
  }
}

function chatRows(messages) {
  const out = [];
  messages.forEach((message, i) => {
    const parts = Array.isArray(message.content) ? message.content : [message.content];
    const answer = message.role === "assistant" && !message.metadata?.title; // not a thought
    parts.forEach((part, k) => {
      const last = k === parts.length - 1;
      const card = !answer ? null : parts.length === 1 ? "only" : k === 0 ? "first" : last ? "last" : "middle";
      const alt = (part && part.alt_text) || "";
      out.push({ role: message.role, message: i, kind: fileOf(part) ? "file" : "text", alt, card, version: last ? versionOf(message) : null });
    });
  });
  // A picture's label: a text right before an upload ("Picture 2", "Video 1"), or before a picture of
  // the same answer. A question (before the picture of the region it asks about) or an answer's text never is.
  out.forEach((row, i) => {
    const next = out[i + 1];
    if (row.kind !== "text" || !next || next.kind !== "file") return;
    const upload = row.role === "user" && next.role === "user" && /^(Picture|Video) \d+$/.test(next.alt);
    const ofAnswer = row.card && row.card !== "first" && next.message === row.message;
    if (upload || ofAnswer) row.kind = "caption";
  });
  return out;
}

// A picture's label is not a question: no Copy or Edit buttons under it. An answer's rows are one
// card (page.css): only its last row keeps Gradio's buttons (Retry, Undo) and gets the card's own
// Copy. Each part of a message is its own row (the chat does not group them: see demo/page/ui.py).
function fixRows() {
  const shown = document.querySelectorAll("#chatbot .message-row");
  if (shown.length !== rows.length) return; // Gradio has not drawn the chat's new value yet
  shown.forEach((row, i) => {
    markRow(row, rows[i]);
    placeTools(row, rows[i]);
  });
}

function markRow(row, { kind, card }) {
  row.classList.toggle("qvc-caption", kind === "caption" && !card);
  setData(row, "qvcKind", kind);
  setData(row, "qvcCard", card);
  const buttons = row.nextElementSibling;
  if (buttons && buttons.classList.contains("message-buttons")) buttons.classList.toggle("qvc-caption-buttons", kind === "caption" && !card);
}

function setData(node, name, value) {
  if (value == null) delete node.dataset[name];
  else if (node.dataset[name] !== value) node.dataset[name] = value;
}

// -- versions: ‹ 2/3 › arrows on each regenerated answer and each edited question -------------------
// The server tags those messages (metadata id "qvc-version <turn> <shown> <count>", 0-based: see
// demo/views/chat.py); an arrow asks for another version through the hidden #show-version event.

function versionOf(message) {
  const found = /^qvc-version (\d+) (\d+) (\d+)$/.exec(message?.metadata?.id || "");
  if (!found) return null;
  const [turn, shown, count] = found.slice(1).map(Number);
  return { turn, shown, count, question: message.role === "user" };
}

function arrowsFor(version) {
  const what = `${version.question ? "Question" : "Answer"} ${version.turn + 1}`;
  const nav = document.createElement("div");
  nav.className = "qvc-versions";
  setAttributes(nav, { role: "group", "aria-label": `${what}: version ${version.shown + 1} of ${version.count}` });
  const arrow = (text, to, name) => {
    const button = Object.assign(document.createElement("button"), { type: "button", textContent: text });
    button.dataset.want = `${version.turn}:${to}`;
    button.disabled = to < 0 || to >= version.count;
    setAttributes(button, { "aria-label": `${what}: ${name} version (${to + 1} of ${version.count})` });
    return button;
  };
  const place = Object.assign(document.createElement("span"), { textContent: `${version.shown + 1}/${version.count}` });
  place.setAttribute("aria-hidden", "true"); // the group's name says it
  nav.append(arrow("‹", version.shown - 1, "previous"), place, arrow("›", version.shown + 1, "next"));
  nav.dataset.key = `${version.turn} ${version.shown} ${version.count} ${version.question}`;
  return nav;
}

// Under each answer's card: its Copy button, and its versions' arrows; under an edited question, its arrows.
function placeTools(row, { version, card }) {
  const versionKey = version ? `${version.turn} ${version.shown} ${version.count} ${version.question}` : "";
  const tools = card === "only" || card === "last";
  const key = `${tools} ${versionKey}`;
  const placed = row.querySelector(":scope > .qvc-tools, :scope > .qvc-versions");
  if (placed && placed.dataset.key === key) return;
  placed?.remove();
  if (!tools && !version) return;
  const line = tools ? Object.assign(document.createElement("div"), { className: "qvc-tools" }) : arrowsFor(version);
  if (tools) {
    if (version) line.append(arrowsFor(version));
    line.append(copyButton());
  }
  line.dataset.key = key;
  row.append(line);
}

// -- one Copy for an answer: the text of its card as the person reads it (its answer and its list of
// groundings; not the pictures' labels). Gradio's own Copy would give each part's Markdown, with the
// HTML entities demo/views/markup.py writes ("&#91;Picture 1&#93;"). --------------------------------

// Its words are drawn by page.css (::after), so that the chat's text, selected or read, is the chat's alone.
function copyButton() {
  const button = Object.assign(document.createElement("button"), { type: "button", className: "qvc-copy" });
  button.setAttribute("aria-label", "Copy the answer");
  return button;
}

function cardText(lastRow) {
  const texts = [];
  for (let row = lastRow; row; row = row.previousElementSibling) {
    if (!row.classList.contains("message-row")) continue; // Gradio's buttons between the rows
    if (row.dataset.qvcKind === "text") texts.unshift(row.querySelector("[data-testid=bot]")?.innerText.trim() || "");
    if (row.dataset.qvcCard === "first" || row.dataset.qvcCard === "only" || !row.dataset.qvcCard) break;
  }
  return texts.filter(Boolean).join("\n\n");
}

async function toClipboard(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = Object.assign(document.createElement("textarea"), { value: text }); // not a secure context
    area.style.cssText = "position: fixed; left: -9999px";
    document.body.append(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }
}

document.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("#chatbot .qvc-copy") : null;
  if (!button) return;
  const copied = await toClipboard(cardText(button.closest(".message-row")));
  button.dataset.copied = copied ? "yes" : "no";
  button.setAttribute("aria-label", copied ? "Answer copied" : "The answer could not be copied");
  clearTimeout(button.qvcTimer);
  button.qvcTimer = setTimeout(() => {
    delete button.dataset.copied;
    button.setAttribute("aria-label", "Copy the answer");
  }, 2000);
});

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("#chatbot .qvc-versions button") : null;
  if (!button || button.disabled) return;
  window.qvcVersionWanted = button.dataset.want;
  document.querySelector("#show-version")?.click();
  refocusSoon();
});

// The chat shows a question as inert Markdown (demo/views/markup.py writes the characters that could
// make HTML, links or code as HTML entities; an older version wrote "![" as "!\[" and left code
// alone); the edit box Gradio opens holds that text: give it back the question as typed. A
// <textarea> decodes entities into text and never parses markup.
const decoder = document.createElement("textarea");
function typed(shown) {
  decoder.innerHTML = shown.replaceAll("!\\[", "![");
  return decoder.value;
}
function restoreEditedText() {
  for (const box of document.querySelectorAll("#chatbot textarea.edit-textarea:not([data-qvc])")) {
    box.dataset.qvc = "1";
    box.setAttribute("aria-label", "Edit your question");
    const text = typed(box.value);
    if (text !== box.value) {
      box.value = text;
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
    box.focus();
  }
}

// Gradio 6.31's toast header is a button (it folds the messages) holding the Close button: a button in
// a button, which screen readers cannot reach (axe: nested-interactive). The title row becomes the
// folding button instead; its keys still reach the header's own handler (they bubble up to it).
function fixToasts() {
  for (const header of document.querySelectorAll(".toast-header[role=button]")) {
    const row = header.querySelector(".toast-title-row");
    if (!row || !header.querySelector("button")) continue;
    header.removeAttribute("role");
    header.removeAttribute("tabindex");
    setAttributes(row, { role: "button", tabindex: "0" });
  }
  for (const row of document.querySelectorAll(".toast-title-row[role=button]")) {
    const open = !!row.querySelector(".chevron.expanded");
    setAttributes(row, { "aria-expanded": String(open) });
  }
}

function emptyDefaults() {
  for (const input of document.querySelectorAll("#min-pixels input, #max-pixels input")) {
    if (input.value === "0" && document.activeElement !== input) input.value = "";
  }
}

function regenerateOnlyWithAnAnswer() {
  // Regenerate is unavailable until there is an answer (it used to put a refusal where the examples are).
  const regenerate = document.querySelector("#regenerate");
  const answered = !!document.querySelector("#chatbot [data-testid='bot']");
  if (regenerate && regenerate.disabled === answered) regenerate.disabled = !answered;
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    nameChatMedia();
    labelThumbnails();
    nameControls();
    nameMessages();
    fixRows();
    restoreEditedText();
    emptyDefaults();
    regenerateOnlyWithAnAnswer();
    fixToasts();
  });
}

new MutationObserver(schedule).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ["src"] });
schedule();
if (!touch) {
  // The textbox may mount after this element: focus it as soon as it is there.
  const started = performance.now();
  const idle = () => !document.activeElement || document.activeElement === document.body;
  const waitForBox = () => (!idle() || focusBox() || performance.now() - started > 5000 ? null : setTimeout(waitForBox, 50));
  waitForBox();
}
