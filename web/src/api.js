// The Todo API client the web app and the docs' "try it" forms share: JSON in and out,
// problem+json errors as `ApiProblem`, the session's tokens kept in sessionStorage (gone
// with the tab; the pages' CSP allows no foreign script that could read them), and one
// transparent refresh when the access token has expired.

const SESSION_KEY = "edge-todo.session";

/** An answer with a problem+json body (or another non-2xx status). */
export class ApiProblem extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem ?? {};
  }

  /** Field errors (`errors[].field/message`) as one line each. */
  get fieldMessages() {
    return (this.problem.errors ?? []).map((e) => `${e.field}: ${e.message}`);
  }
}

export function loadSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY)) ?? null;
  } catch {
    return null;
  }
}

function saveSession(session) {
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
}

function sessionFrom(pair, username) {
  return {
    username,
    accessToken: pair.access_token,
    refreshToken: pair.refresh_token,
    expiresAt: Date.now() + pair.expires_in * 1000,
  };
}

async function readBody(response) {
  if (response.status === 204 || response.status === 304) return null;
  const text = await response.text();
  if (!text) return null;
  const type = response.headers.get("content-type") ?? "";
  return type.includes("json") ? JSON.parse(text) : text;
}

/** One request; resolves to `{ status, headers, body }` or throws `ApiProblem`. */
export async function send(method, path, { body, query, headers = {}, token } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const init = { method, headers: { accept: "application/json", ...headers } };
  if (token) init.headers.authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const result = { status: response.status, headers: response.headers, body: await readBody(response) };
  if (!response.ok && response.status !== 304) throw new ApiProblem(response.status, result.body);
  return result;
}

/** The signed-in user's client: every call carries the access token, refreshed when needed. */
export class Client {
  constructor(onSignedOut) {
    this.session = loadSession();
    this.onSignedOut = onSignedOut;
  }

  get signedIn() {
    return Boolean(this.session);
  }

  async register(username, email, password) {
    await send("POST", "/auth/register", {
      body: { username, email, password },
      headers: { "idempotency-key": crypto.randomUUID() },
    });
    await this.login(username, password);
  }

  async login(username, password) {
    const { body } = await send("POST", "/auth/login", { body: { username, password } });
    this.session = sessionFrom(body, username);
    saveSession(this.session);
  }

  async logout() {
    const session = this.session;
    this.forget();
    if (session) {
      // Ends the session on the server too (the refresh token's family is revoked).
      await send("POST", "/auth/logout", {
        body: { refresh_token: session.refreshToken },
      }).catch(() => {});
    }
  }

  forget() {
    this.session = null;
    saveSession(null);
  }

  async refresh() {
    const { body } = await send("POST", "/auth/refresh", {
      body: { refresh_token: this.session.refreshToken },
    });
    this.session = sessionFrom(body, this.session.username);
    saveSession(this.session);
  }

  /** A call as the signed-in user; a 401 after one refresh signs the user out. */
  async call(method, path, options = {}) {
    if (!this.session) throw new ApiProblem(401, { title: "Not signed in" });
    if (Date.now() > this.session.expiresAt - 10_000) await this.refreshOrSignOut();
    try {
      return await send(method, path, { ...options, token: this.session.accessToken });
    } catch (err) {
      if (!(err instanceof ApiProblem) || err.status !== 401) throw err;
      await this.refreshOrSignOut();
      return send(method, path, { ...options, token: this.session.accessToken });
    }
  }

  async refreshOrSignOut() {
    try {
      await this.refresh();
    } catch (err) {
      this.forget();
      this.onSignedOut?.();
      throw err;
    }
  }

  listTodos(query) {
    return this.call("GET", "/todos", { query });
  }

  /** One todo with its current `etag` (for a conditional update). */
  async getTodo(id) {
    const { body, headers } = await this.call("GET", `/todos/${id}`);
    return { ...body, etag: headers.get("etag") };
  }

  /** The changes after `since`: `{ items, deleted }` over every page (oldest first). */
  async changesSince(since) {
    const items = [];
    const deleted = [];
    let cursor;
    do {
      const { body } = await this.listTodos({ updated_since: since, limit: 100, cursor });
      items.push(...body.items);
      deleted.push(...(body.deleted ?? []));
      cursor = body.next_cursor;
    } while (cursor);
    return { items, deleted };
  }

  createTodo(fields) {
    // A retried create (a lost answer, a double click) makes one todo, not two.
    return this.call("POST", "/todos", {
      body: fields,
      headers: { "idempotency-key": crypto.randomUUID() },
    });
  }

  updateTodo(todo, fields) {
    return this.call("PATCH", `/todos/${todo.id}`, { body: fields, headers: ifMatch(todo) });
  }

  deleteTodo(todo) {
    return this.call("DELETE", `/todos/${todo.id}`, { headers: ifMatch(todo) });
  }
}

/** Writes are conditional on the version shown, so another tab's change is not overwritten. */
function ifMatch(todo) {
  return todo.etag ? { "if-match": todo.etag } : {};
}
