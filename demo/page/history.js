// The conversations kept in this browser: a list beside the chat, newest first.
//
// Each conversation is the app's own saved file (what Save downloads: questions, answers, pictures,
// videos' frames, versions), kept in IndexedDB, which only this browser and this site can read. After
// every change of the chat (an answer ends, Undo, an edit, a Load) the page asks the server for the
// file (the hidden #snapshot event) and keeps it under this tab's conversation; opening one from the
// list (or reloading the tab, whose conversation sessionStorage remembers) loads it back through the
// page's own Load, so a refused file changes nothing and says why. Run by the list's gr.HTML
// (`element` is its root); `window.qvcChat` (page.js) passes every chat change on.

const DB_NAME = "qwen-vl-chat";
const META = "conversations"; // {id, title, created, updated, bytes}
const DATA = "files"; // {id, blob}
const MAX_KEPT = 100; // conversations
const MAX_BYTES = 512 * 1024 * 1024; // all of them together
const TAB_KEY = "qvc-conversation"; // sessionStorage: this tab's conversation
const DRAFT_KEY = "qvc-draft"; // sessionStorage: what this tab's textbox holds, not sent yet
const FULL = `This browser keeps at most ${MAX_KEPT} conversations and ${MAX_BYTES / 2 ** 20} MB here: delete some to keep this one.`;

let current = sessionStorage.getItem(TAB_KEY);
let lastKey = null; // what the kept copy of the current conversation shows
let restoringUntil = 0; // a Load of a kept conversation is under way: the chat it shows is not a change
let pendingKey = null;
let pendingTitle = "";
let timer = null;
let notice = "";
let seenUpdated = null; // the kept copy's `updated` when this tab last opened or kept it
let reopening = null; // { id, previous, previousSeen }: a kept conversation being opened, and the tab's one before
let cleared = null; // { id, seen, key }: the tab's conversation when Clear emptied the chat (its Undo brings it back)
let loading = false; // a file is being loaded with Load: what it shows is a conversation of its own

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      request.result.createObjectStore(META, { keyPath: "id" });
      request.result.createObjectStore(DATA, { keyPath: "id" });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, work) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction([META, DATA], mode);
      let result;
      Promise.resolve(work(tx.objectStore(META), tx.objectStore(DATA))).then((r) => (result = r));
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

const asked = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

async function listed() {
  const all = await run("readonly", (meta) => asked(meta.getAll()));
  return (all || []).sort((a, b) => b.updated - a.updated);
}

function setCurrent(id) {
  current = id;
  if (id) sessionStorage.setItem(TAB_KEY, id);
  else sessionStorage.removeItem(TAB_KEY);
}

function contentKey(messages) {
  // What the conversation shows, without the file URLs (a loaded copy's files have new ones).
  return JSON.stringify((messages || []).map((m) => {
    const parts = Array.isArray(m.content) ? m.content : [m.content];
    return [m.role, parts.map((p) => (typeof p === "string" ? p : p && (p.text || p.alt_text || (p.file ? "file" : ""))))];
  }));
}

const partsOf = (m) => (m ? (Array.isArray(m.content) ? m.content : [m.content]) : []);
const hasFile = (m) => partsOf(m).some((p) => p && typeof p === "object" && p.file);

function firstQuestion(messages) {
  const list = messages || [];
  for (const [i, m] of list.entries()) {
    if (m.role !== "user" || hasFile(m) || hasFile(list[i + 1])) continue; // a picture, or its caption
    const parts = partsOf(m);
    for (const p of parts) {
      const text = typeof p === "string" ? p : p && p.text;
      if (text && text.trim()) return new DOMParser().parseFromString(text, "text/html").body.textContent.trim().slice(0, 80);
    }
  }
  return "Pictures";
}

const answering = () => !!document.querySelector("#message button.stop-button");
const textOf = (m) => partsOf(m).map((p) => (typeof p === "string" ? p : (p && p.text) || "")).join("");

// -- keeping -----------------------------------------------------------------------------------------

function changed(messages) {
  clearTimeout(timer);
  const box = document.querySelector("#message textarea");
  if (box && !box.value) sessionStorage.removeItem(DRAFT_KEY); // sent (the app empties the textbox)
  const hasQuestion = (messages || []).some((m) => m.role === "user");
  const last = (messages || []).at(-1);
  if (reopening && performance.now() < restoringUntil && last?.role === "assistant" && textOf(last).startsWith("⚠")) {
    // The app refused the kept file (corrupt, or from a newer version): it says why in the chat, the
    // tab goes back to what it showed, and the list marks the file, which stays until deleted.
    const { id, previous, previousSeen } = reopening;
    reopening = null;
    restoringUntil = 0;
    setCurrent(previous);
    seenUpdated = previousSeen;
    markUnreadable(id, textOf(last).replace(/^⚠\s*/, ""));
    return;
  }
  if (last?.role === "assistant" && textOf(last).startsWith("⚠")) {
    loading = false; // something was refused (a message, a Load): the conversation did not change
    return;
  }
  if (hasQuestion && performance.now() < restoringUntil) {
    restoringUntil = 0;
    reopening = null;
    lastKey = contentKey(messages);
    if (!lost) showLost(false); // back after the app was gone: the conversation is there again
    return;
  }
  if (!hasQuestion) {
    // An empty chat (Clear): the next question starts a conversation of its own, unless Undo brings
    // this one back. (Before a reload's restore has shown anything, lastKey is null: nothing ends.)
    if (current && lastKey !== null) {
      cleared = { id: current, seen: seenUpdated, key: lastKey };
      setCurrent(null);
      seenUpdated = null;
      lastKey = null;
    }
    return;
  }
  const key = contentKey(messages);
  if (cleared) {
    const back = cleared.key === key; // Clear's Undo: the same conversation, under its own name
    if (back) {
      setCurrent(cleared.id);
      seenUpdated = cleared.seen;
      lastKey = key;
    }
    cleared = null;
    if (back) return;
  }
  if (loading) {
    loading = false; // a loaded file is kept beside the conversation it replaced, not over it
    if (key !== lastKey) {
      setCurrent(null);
      seenUpdated = null;
    }
  }
  if (key === lastKey) return;
  const settled = () => {
    if (answering()) {
      timer = setTimeout(settled, 500);
      return;
    }
    pendingKey = key;
    pendingTitle = firstQuestion(messages);
    document.querySelector("#snapshot")?.click();
  };
  timer = setTimeout(settled, 600);
}

let storing = Promise.resolve();
function store(file) {
  // One at a time: a second copy waits for the first to have named the conversation.
  storing = storing.then(() => storeNow(file)).catch(() => {});
  return storing;
}

async function storeNow(file) {
  if (!file || !file.url || pendingKey === null) return;
  const key = pendingKey;
  const blob = await (await fetch(file.url, { credentials: "same-origin" })).blob();
  const fresh = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  const kept = await listed();
  let id = current || fresh();
  let before = kept.find((c) => c.id === id);
  let forked = "";
  if (before && before.updated !== seenUpdated) {
    // Another tab kept this conversation since this one opened it: both go on, as two conversations.
    forked = ` (${new Date().toLocaleTimeString([], { timeStyle: "short" })}, another tab)`;
    id = fresh();
    before = undefined;
  }
  const others = kept.filter((c) => c.id !== id);
  if (others.length + 1 > MAX_KEPT || others.reduce((n, c) => n + c.bytes, 0) + blob.size > MAX_BYTES) {
    notice = FULL;
    render(kept);
    return;
  }
  const now = Date.now();
  const title = (before && before.renamed ? before.title : pendingTitle) + forked;
  try {
    await run("readwrite", (meta, data) => {
      meta.put({ id, title, renamed: !!(before && before.renamed) || !!forked, created: before ? before.created : now, updated: now, bytes: blob.size });
      data.put({ id, blob });
    });
  } catch (error) {
    notice = FULL; // the browser's own quota
    render(await listed());
    return;
  }
  setCurrent(id);
  seenUpdated = now;
  lastKey = key;
  notice = forked ? "This conversation was changed in another tab meanwhile: what this tab added is kept as a conversation of its own." : "";
  render(await listed());
}

async function markUnreadable(id, why) {
  await run("readwrite", async (meta) => {
    const record = await asked(meta.get(id));
    if (record) meta.put({ ...record, unreadable: why.slice(0, 300) });
  });
  notice = "";
  render(await listed());
}

// -- opening ---------------------------------------------------------------------------------------

function closeOnPhone() {
  // On a phone the list covers the chat: once a conversation is chosen, show the chat.
  const sidebar = document.querySelector("#history-sidebar");
  if (window.innerWidth < 768 && sidebar?.classList.contains("open")) sidebar.querySelector(".toggle-button")?.click();
}

let opening = null; // the uploaded file the #reopen event loads (its `js` takes it from here)

async function open(id) {
  const [record, about] = await run("readonly", (meta, data) => Promise.all([asked(data.get(id)), asked(meta.get(id))]));
  if (!record || !about) return;
  const form = new FormData();
  form.append("files", new File([record.blob], "conversation.json", { type: "application/json" }));
  const answer = await fetch(new URL("gradio_api/upload", location.href), { method: "POST", body: form, credentials: "same-origin" });
  if (!answer.ok) {
    notice = `This conversation could not be sent to the app (${answer.status}): try again in a moment.`;
    render(await listed());
    return;
  }
  const [path] = await answer.json();
  opening = { path, orig_name: "conversation.json", meta: { _type: "gradio.FileData" } };
  reopening = { id, previous: current === id ? null : current, previousSeen: seenUpdated };
  setCurrent(id);
  seenUpdated = about.updated;
  restoringUntil = performance.now() + 10000;
  document.querySelector("#reopen")?.click();
  closeOnPhone();
  render(await listed());
}

function startNew() {
  setCurrent(null);
  seenUpdated = null;
  lastKey = null;
  const clear = document.querySelector("#clear");
  if (document.querySelector("#chatbot [data-testid='user']") && clear) clear.click();
  closeOnPhone();
  listed().then(render);
}

async function remove(id) {
  await run("readwrite", (meta, data) => {
    meta.delete(id);
    data.delete(id);
  });
  if (id === current) startNew();
  else render(await listed());
}

async function removeAll() {
  await run("readwrite", (meta, data) => {
    meta.clear();
    data.clear();
  });
  startNew();
}

async function rename(id, title) {
  await run("readwrite", async (meta) => {
    const record = await asked(meta.get(id));
    if (record) meta.put({ ...record, title: title.slice(0, 80), renamed: true });
  });
  render(await listed());
}

// -- the list ----------------------------------------------------------------------------------------

function button(text, label, onClick, className = "") {
  const b = Object.assign(document.createElement("button"), { type: "button", textContent: text, className });
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

// Gradio's sidebar opens with a small chevron at the page's edge: the title's line says the list is there.
function listButton(count) {
  const title = document.querySelector("#intro h1");
  if (!title) return;
  let open = document.querySelector("#history-show");
  if (!open) {
    open = Object.assign(document.createElement("button"), { type: "button", id: "history-show" });
    open.addEventListener("click", () => document.querySelector("#history-sidebar .toggle-button")?.click());
    title.after(open);
  }
  const text = count ? `Your conversations (${count})` : "Your conversations";
  if (open.textContent !== text) open.textContent = text;
}

let confirmingAll = false;
function render(kept) {
  listButton(kept.length);
  element.replaceChildren();
  const head = document.createElement("div");
  head.className = "history-head";
  head.append(button("New chat", "New chat", startNew, "history-new"));
  if (kept.length) {
    head.append(button(confirmingAll ? `Really delete all ${kept.length}?` : "Delete all", "Delete all conversations", () => {
      if (confirmingAll) {
        confirmingAll = false;
        removeAll();
      } else {
        confirmingAll = true;
        render(kept);
      }
    }, "history-delete-all"));
  }
  element.append(head);
  if (notice) {
    const p = Object.assign(document.createElement("p"), { className: "history-notice", textContent: notice });
    p.setAttribute("role", "status");
    element.append(p);
  }
  if (!kept.length) {
    element.append(Object.assign(document.createElement("p"), { className: "history-empty", textContent: "Your conversations will be kept here, in this browser only." }));
    return;
  }
  const list = document.createElement("ul");
  list.className = "history-list";
  list.setAttribute("aria-label", "Conversations kept in this browser");
  for (const c of kept) {
    const item = document.createElement("li");
    item.className = "history-item" + (c.id === current ? " current" : "");
    const when = new Date(c.updated).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
    const openIt = button(c.title, `Open ${c.title}`, () => open(c.id), "history-open");
    if (c.id === current) openIt.setAttribute("aria-current", "true");
    const meta = Object.assign(document.createElement("span"), { className: "history-when", textContent: when });
    if (c.unreadable) {
      meta.textContent = `${when} · could not be opened: ${c.unreadable}`;
      meta.classList.add("history-unreadable");
    }
    const renameIt = button("Rename", `Rename ${c.title}`, () => {
      const field = Object.assign(document.createElement("input"), { value: c.title, className: "history-title" });
      field.setAttribute("aria-label", "New name");
      const done = () => rename(c.id, field.value.trim() || c.title);
      field.addEventListener("keydown", (e) => e.key === "Enter" && done());
      field.addEventListener("blur", done);
      openIt.replaceWith(field);
      field.focus();
    }, "history-rename");
    const deleteIt = button("Delete", `Delete ${c.title}`, () => remove(c.id), "history-delete");
    item.append(openIt, meta, renameIt, deleteIt);
    list.append(item);
  }
  element.append(list);
}

window.qvcHistory = {
  changed, store, open, startNew,
  opening: () => {
    const file = opening;
    opening = null;
    return file;
  },
};

// -- the connection ---------------------------------------------------------------------------------
// While the app cannot be reached (a restart, a crash, the network), the page says so and the textbox
// keeps what is typed; once it is back, this tab's conversation is opened again from the kept copy,
// so that the next message follows it instead of starting over (a restarted app has no sessions).

const PROBE_MS = 3000;
const LOST = "The app cannot be reached (it may be restarting): what you type is kept, and this conversation comes back when the app does.";
let lost = false;

function showLost(show) {
  let line = document.querySelector("#connection");
  if (!line && show) {
    line = Object.assign(document.createElement("p"), { id: "connection", textContent: LOST });
    line.setAttribute("role", "status");
    Object.assign(line.style, { position: "sticky", top: "0", zIndex: "20", margin: "0", padding: "0.5rem 0.75rem",
      background: "#fef3c7", color: "#78350f", borderBottom: "1px solid #f59e0b" });
    document.querySelector("#model-status")?.before(line);
  }
  if (line) line.hidden = !show;
}

async function probe() {
  if (document.visibilityState === "visible") {
    let up = false;
    try {
      // a small static file; any answer but a proxy's 5xx means the app is there (a login page's 401 too)
      up = (await fetch(new URL("manifest.json", location.href), { cache: "no-store" })).status < 500;
    } catch (error) {
      up = false;
    }
    if (!up && !lost) {
      lost = true;
      showLost(true);
    } else if (up && lost) {
      lost = false;
      const kept = await listed();
      if (current && kept.some((c) => c.id === current)) {
        open(current); // the line goes once the conversation is back (`changed`), or after 10 s
        setTimeout(() => showLost(false), 10000);
      } else {
        showLost(false);
      }
    }
  }
  setTimeout(probe, PROBE_MS);
}
setTimeout(probe, PROBE_MS);

// Load (a saved file) replaces the chat: the kept conversation it replaces stays as it was.
document.addEventListener(
  "change",
  (event) => {
    if (event.target instanceof HTMLInputElement && event.target.matches("#save-load input[type=file]")) loading = true;
  },
  true,
);

// The draft survives a reload of the tab.
document.addEventListener("input", (event) => {
  if (event.target.matches?.("#message textarea")) sessionStorage.setItem(DRAFT_KEY, event.target.value);
});
function restoreDraft() {
  const draft = sessionStorage.getItem(DRAFT_KEY);
  const box = document.querySelector("#message textarea");
  if (!box) return setTimeout(restoreDraft, 100);
  if (draft && !box.value) {
    box.value = draft;
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }
}
restoreDraft();

listed().then((kept) => {
  render(kept);
  if (current && kept.some((c) => c.id === current && !c.unreadable)) {
    // This tab's conversation (a reload, or the server restarted): load it once the page's Load is there.
    const started = performance.now();
    const waitForLoad = () => {
      if (document.querySelector("#reopen") && document.querySelector("#message textarea")) open(current);
      else if (performance.now() - started < 15000) setTimeout(waitForLoad, 100);
    };
    waitForLoad();
  } else if (current) {
    setCurrent(null); // deleted in another tab
  }
});
