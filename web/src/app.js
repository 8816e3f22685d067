// The todo web app: sign up or log in, then add, filter, search, edit, complete and delete
// todos through the API, and stay in sync with changes made elsewhere (another tab, another
// device) through the API's incremental sync (`updated_since`). Everything the page shows
// from the API is set as text (`textContent`), never parsed as HTML.
import "./style.css";
import { ApiProblem, Client } from "./api.js";

const $ = (selector, root = document) => root.querySelector(selector);
/** A fresh copy of a todo's fields (title, tags, due, priority, notes) for a form. */
const todoFields = () => $("#todo-fields").content.cloneNode(true);
$("#new-todo").prepend(todoFields());
const client = new Client(() => showSignedOut("Your session ended; please log in again."));
const PRIORITY = ["", "low priority", "medium priority", "high priority"];
/** How often a visible page asks for changes made elsewhere. */
const SYNC_INTERVAL_MS = 4000;
let nextCursor = null;
/** The latest `updated_at`/`deleted_at` seen: the next sync asks for what came after it. */
let syncSince = null;
let syncing = false;

function setStatus(message, kind = "info") {
  const status = $("#status");
  status.textContent = message;
  status.dataset.kind = kind;
}

/** What went wrong, in words: the problem's detail and its field errors. */
function describe(err) {
  if (err instanceof ApiProblem) {
    return [err.message, ...err.fieldMessages].join(" — ");
  }
  return `The API could not be reached (${err.message}).`;
}

function fail(err) {
  setStatus(describe(err), "error");
}

function showSignedOut(message = "") {
  $("#auth").hidden = false;
  $("#todos").hidden = true;
  $("#logout").hidden = true;
  $("#whoami").hidden = true;
  $("#todo-list").replaceChildren();
  syncSince = null;
  setStatus(message, message ? "error" : "info");
}

function showSignedIn() {
  $("#auth").hidden = true;
  $("#todos").hidden = false;
  $("#logout").hidden = false;
  $("#whoami").hidden = false;
  $("#whoami").textContent = client.session.username;
  setStatus("");
  return reload();
}

/** "work, Home ,work" -> ["work", "home"]: the API's normalisation, so the form shows it. */
function parseTags(text) {
  const tags = text
    .split(",")
    .map((tag) => tag.trim().toLowerCase())
    .filter(Boolean);
  return [...new Set(tags)];
}

/** A `datetime-local` value (the user's time zone) as an RFC 3339 instant, or null. */
function toInstant(local) {
  return local ? new Date(local).toISOString() : null;
}

/** An instant as a `datetime-local` value in the user's time zone. */
function toLocalInput(instant) {
  if (!instant) return "";
  const date = new Date(instant);
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return shifted.toISOString().slice(0, 16);
}

function fieldsOf(form) {
  const data = new FormData(form);
  const notes = data.get("notes").trim();
  return {
    title: data.get("title").trim(),
    tags: parseTags(data.get("tags")),
    due_at: toInstant(data.get("due_at")),
    priority: Number(data.get("priority")),
    notes: notes || null,
  };
}

function filterQuery() {
  const data = new FormData($("#filters"));
  const query = {};
  for (const name of ["q", "tag", "completed", "sort"]) {
    const value = data.get(name).trim();
    if (value) query[name] = value;
  }
  return query;
}

function renderTodo(todo) {
  const item = $("#todo-item").content.firstElementChild.cloneNode(true);
  item.dataset.id = todo.id;
  item.dataset.created = todo.created_at;
  item.classList.toggle("completed", todo.completed);
  $(".title", item).textContent = todo.title;
  const due = $(".due", item);
  if (todo.due_at) {
    const when = new Date(todo.due_at);
    due.textContent = `due ${when.toLocaleString()}`;
    due.classList.toggle("overdue", !todo.completed && when < new Date());
  }
  $(".priority", item).textContent = PRIORITY[todo.priority] ?? "";
  const tags = $(".tags", item);
  for (const tag of todo.tags) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "tag";
    chip.textContent = tag;
    chip.title = `Show only #${tag}`;
    chip.addEventListener("click", () => {
      $("#filters").elements.tag.value = tag;
      reload();
    });
    tags.append(chip);
  }
  $(".notes", item).textContent = todo.notes ?? "";
  const done = $(".done", item);
  done.checked = todo.completed;
  done.addEventListener("change", () =>
    update(item, todo, { completed: done.checked }).catch((err) => {
      done.checked = todo.completed;
      fail(err);
    }),
  );
  $(".edit", item).addEventListener("click", () => edit(item, todo).catch(fail));
  $(".delete", item).addEventListener("click", () => remove(item, todo).catch(fail));
  return item;
}

async function update(item, todo, fields) {
  const { body } = await client.updateTodo(todo, fields);
  const updated = body;
  item.replaceWith(renderTodo(updated));
  setStatus(`Saved “${updated.title}”.`);
}

async function remove(item, todo) {
  await client.deleteTodo(todo);
  item.remove();
  $("#empty").hidden = $("#todo-list").children.length > 0;
  setStatus(`Deleted “${todo.title}”.`);
}

/** Opens the editor on the todo as the server has it now, and saves conditionally
 *  (`If-Match`): a change made elsewhere meanwhile is shown, never overwritten. */
async function edit(item, todo) {
  if ($(".editor", item)) return;
  const current = await client.getTodo(todo.id);
  const form = $("#todo-editor").content.firstElementChild.cloneNode(true);
  form.prepend(todoFields());
  const fill = (fresh) => {
    form.elements.title.value = fresh.title;
    form.elements.tags.value = fresh.tags.join(", ");
    form.elements.due_at.value = toLocalInput(fresh.due_at);
    form.elements.priority.value = String(fresh.priority);
    form.elements.notes.value = fresh.notes ?? "";
  };
  let base = current;
  fill(base);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await update(item, base, fieldsOf(form));
    } catch (err) {
      if (!(err instanceof ApiProblem) || err.status !== 412) return fail(err);
      base = await client.getTodo(todo.id);
      fill(base);
      setStatus("This todo was changed elsewhere meanwhile; the form now shows that version. Save again to replace it.", "error");
    }
  });
  $(".cancel", form).addEventListener("click", () => form.remove());
  item.append(form);
  form.elements.title.focus();
}

/** Newest first: before the first todo created earlier; past the last one only when no
 *  page is left to load (it would belong to one of those). */
function insertByCreation(list, item, createdAt) {
  const later = [...list.children].find((shown) => Date.parse(shown.dataset.created) < Date.parse(createdAt));
  if (later) later.before(item);
  else if (!nextCursor) list.append(item);
}

function see(instant) {
  if (!instant) return;
  const [next, last] = [Date.parse(instant), Date.parse(syncSince)];
  if (!syncSince || next > last || (next === last && instant > syncSince)) syncSince = instant;
}

function filtered() {
  const query = filterQuery();
  return Object.keys(query).some((name) => name !== "sort" || query.sort !== "created");
}

/** Applies the changes made elsewhere since the last sync. Unfiltered, newest first: in
 *  place. Filtered or sorted otherwise: the server decides what belongs, so re-query. */
async function sync() {
  if (syncing || !client.signedIn || !syncSince || document.hidden) return;
  syncing = true;
  try {
    const { items, deleted } = await client.changesSince(syncSince);
    for (const change of items) see(change.updated_at);
    for (const gone of deleted) see(gone.deleted_at);
    if (!items.length && !deleted.length) return;
    if (filtered()) return void (await reload());
    const list = $("#todo-list");
    for (const gone of deleted) list.querySelector(`[data-id="${CSS.escape(gone.id)}"]`)?.remove();
    for (const todo of items) {
      const shown = list.querySelector(`[data-id="${CSS.escape(todo.id)}"]`);
      if (shown && $(".editor", shown)) continue; // the editor's save is conditional
      if (shown) shown.replaceWith(renderTodo(todo));
      else insertByCreation(list, renderTodo(todo), todo.created_at);
    }
    $("#empty").hidden = list.children.length > 0;
  } catch (err) {
    // 410: the last sync is older than the API keeps deletions; read everything again.
    if (err instanceof ApiProblem && err.status === 410) await reload();
    else if (!(err instanceof ApiProblem && err.status === 401)) fail(err);
  } finally {
    syncing = false;
  }
}

async function loadPage() {
  const query = { ...filterQuery(), limit: 20 };
  if (nextCursor) query.cursor = nextCursor;
  const { body, headers } = await client.listTodos(query);
  $("#todo-list").append(...body.items.map(renderTodo));
  // Where sync starts: the newest change listed, or (nothing listed) the server's time
  // of this answer, less a margin for the database's clock.
  for (const todo of body.items) see(todo.updated_at);
  if (!syncSince) see(new Date(Date.parse(headers.get("date") ?? new Date().toUTCString()) - 5000).toISOString());
  nextCursor = body.next_cursor;
  $("#more").hidden = !nextCursor;
  $("#empty").hidden = $("#todo-list").children.length > 0;
}

function reload() {
  nextCursor = null;
  syncSince = null;
  $("#todo-list").replaceChildren();
  return loadPage().catch(fail);
}

function onSubmit(selector, action) {
  const form = $(selector);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("button[type=submit]", form);
    button.disabled = true;
    try {
      await action(form);
    } catch (err) {
      fail(err);
    } finally {
      button.disabled = false;
    }
  });
}

onSubmit("#login-form", async (form) => {
  const data = new FormData(form);
  await client.login(data.get("username").trim(), data.get("password"));
  form.reset();
  await showSignedIn();
});

onSubmit("#register-form", async (form) => {
  const data = new FormData(form);
  await client.register(data.get("username").trim(), data.get("email").trim(), data.get("password"));
  form.reset();
  await showSignedIn();
  setStatus(`Welcome, ${client.session.username}! A welcome e-mail is on its way.`);
});

onSubmit("#new-todo", async (form) => {
  const fields = fieldsOf(form);
  for (const name of ["notes", "due_at"]) if (fields[name] === null) delete fields[name];
  const { body } = await client.createTodo(fields);
  form.reset();
  // Newest first is the default order; other orders and filters are re-read.
  if (filtered()) await reload();
  else $("#todo-list").prepend(renderTodo(body));
  $("#empty").hidden = $("#todo-list").children.length > 0;
  setStatus(`Added “${body.title}”.`);
});

onSubmit("#filters", () => reload());

$("#more").addEventListener("click", () => loadPage().catch(fail));
$("#logout").addEventListener("click", async () => {
  await client.logout();
  showSignedOut("You are logged out.");
  setStatus("You are logged out.");
});

setInterval(sync, SYNC_INTERVAL_MS);
document.addEventListener("visibilitychange", sync);

if (client.signedIn) showSignedIn();
else showSignedOut();
