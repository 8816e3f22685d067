// The API docs: renders /docs/openapi.json (generated from openapi.yaml at build time),
// one collapsible entry per operation with its parameters, request body, responses and a
// "try it" form that sends the request to this origin and shows the answer. Text from the
// spec is set as text, never as HTML.
import "./style.css";
import { loadSession, send, ApiProblem } from "./api.js";

const $ = (selector, root = document) => root.querySelector(selector);
const METHODS = ["get", "post", "put", "patch", "delete"];

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** Follows a local `$ref` ("#/components/schemas/X"). */
function deref(spec, node) {
  let current = node;
  for (let hops = 0; current?.$ref && hops < 10; hops += 1) {
    current = current.$ref
      .replace(/^#\//, "")
      .split("/")
      .reduce((at, key) => at?.[key.replace(/~1/g, "/").replace(/~0/g, "~")], spec);
  }
  return current ?? {};
}

/** A schema with its references expanded a few levels deep, for display. */
function expand(spec, schema, depth = 0) {
  const resolved = deref(spec, schema);
  if (depth > 4 || typeof resolved !== "object") return resolved;
  if (Array.isArray(resolved)) return resolved.map((s) => expand(spec, s, depth + 1));
  return Object.fromEntries(
    Object.entries(resolved).map(([key, value]) => [
      key,
      typeof value === "object" && value !== null ? expand(spec, value, depth + 1) : value,
    ]),
  );
}

/** A plausible example value of a schema, to start a "try it" body from. */
function example(spec, schema, depth = 0) {
  const s = deref(spec, schema);
  if (s.examples?.length) return s.examples[0];
  if (s.default !== undefined) return s.default;
  if (s.const !== undefined) return s.const;
  if (s.enum) return s.enum[0];
  if (s.anyOf || s.oneOf) return example(spec, (s.anyOf ?? s.oneOf)[0], depth + 1);
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (type === "object" || s.properties) {
    if (depth > 3) return {};
    const required = new Set(s.required ?? []);
    return Object.fromEntries(
      Object.entries(s.properties ?? {})
        .filter(([name]) => required.has(name))
        .map(([name, property]) => [name, exampleField(spec, name, property, depth)]),
    );
  }
  if (type === "array") return [];
  if (type === "integer" || type === "number") return s.minimum ?? 0;
  if (type === "boolean") return false;
  if (s.format === "date-time") return new Date(Date.now() + 86_400_000).toISOString();
  if (s.format === "email") return "ann@example.com";
  if (s.format === "uuid") return "00000000-0000-0000-0000-000000000000";
  return "text";
}

function exampleField(spec, name, property, depth) {
  const known = { username: "ann_example", password: "a long passphrase 42", title: "Water the plants" };
  return known[name] ?? example(spec, property, depth + 1);
}

function parameterTable(spec, parameters) {
  if (!parameters.length) return null;
  const rows = parameters.map((p) =>
    el(
      "tr",
      {},
      el("td", {}, el("code", { text: p.name })),
      el("td", { text: p.in + (p.required ? ", required" : "") }),
      el("td", { text: p.description ?? "" }),
    ),
  );
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, el("th", { text: "Parameter" }), el("th", { text: "In" }), el("th", { text: "Description" }))),
    el("tbody", {}, ...rows),
  );
}

function responsesList(spec, responses) {
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, el("th", { text: "Status" }), el("th", { text: "Meaning" }))),
    el(
      "tbody",
      {},
      ...Object.entries(responses ?? {}).map(([status, response]) =>
        el("tr", {}, el("td", {}, el("code", { text: status })), el("td", { text: deref(spec, response).description ?? "" })),
      ),
    ),
  );
}

/** The "try it" form of one operation. */
function tryIt(spec, method, path, parameters, requestBody) {
  const form = el("form", { class: "try", "aria-label": `Try ${method.toUpperCase()} ${path}` });
  const fields = parameters.filter((p) => ["path", "query", "header"].includes(p.in));
  for (const p of fields) {
    form.append(el("label", { text: `${p.name} (${p.in})` }, el("input", { name: `${p.in}:${p.name}`, autocomplete: "off" })));
  }
  const schema = requestBody?.content?.["application/json"]?.schema;
  if (schema) {
    const body = el("textarea", { name: "body", rows: "6", spellcheck: "false" });
    body.value = JSON.stringify(example(spec, schema), null, 2);
    form.append(el("label", { text: "Body (JSON)" }, body));
  }
  const output = el("pre", { class: "result", hidden: "" });
  form.append(el("button", { type: "submit", text: "Send" }), output);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    let url = path;
    const query = {};
    const headers = {};
    for (const p of fields) {
      const value = String(data.get(`${p.in}:${p.name}`) ?? "").trim();
      if (!value) continue;
      if (p.in === "path") url = url.replace(`{${p.name}}`, encodeURIComponent(value));
      else if (p.in === "query") query[p.name] = value;
      else headers[p.name.toLowerCase()] = value;
    }
    const token = $("#token-form").elements.token.value.trim();
    output.hidden = false;
    output.textContent = "…";
    try {
      const answer = await send(method.toUpperCase(), url, {
        query,
        headers,
        token: token || undefined,
        body: schema ? data.get("body") : undefined,
      });
      output.textContent = render(answer.status, answer.body);
    } catch (err) {
      output.textContent =
        err instanceof ApiProblem ? render(err.status, err.problem) : `Not sent: ${err.message}`;
    }
  });
  return form;
}

function render(status, body) {
  const text = typeof body === "string" ? body : JSON.stringify(body, null, 2);
  return `HTTP ${status}\n\n${text ?? ""}`;
}

function operation(spec, path, method, op, shared) {
  const parameters = [...shared, ...(op.parameters ?? [])].map((p) => deref(spec, p));
  const requestBody = op.requestBody ? deref(spec, op.requestBody) : null;
  const bodySchema = requestBody?.content?.["application/json"]?.schema;
  const detail = el(
    "div",
    { class: "detail" },
    op.description ? el("p", { class: "description", text: op.description }) : null,
    op.security?.length ? el("p", { text: "Needs a bearer access token (log in first)." }) : null,
    parameterTable(spec, parameters),
    bodySchema ? el("h4", { text: "Request body" }) : null,
    bodySchema ? el("pre", { text: JSON.stringify(expand(spec, bodySchema), null, 2) }) : null,
    el("h4", { text: "Responses" }),
    responsesList(spec, op.responses),
    el("h4", { text: "Try it" }),
    tryIt(spec, method, path, parameters, requestBody),
  );
  return el(
    "details",
    { class: "op", id: op.operationId ?? `${method}-${path}` },
    el(
      "summary",
      {},
      el("span", { class: "method", text: method }),
      el("span", { class: "path", text: path }),
      el("span", { class: "summary", text: op.summary ?? "" }),
    ),
    detail,
  );
}

function renderSpec(spec) {
  document.title = `${spec.info.title} ${spec.info.version} — docs`;
  $("#api-title").textContent = `${spec.info.title} ${spec.info.version}`;
  $("#api-description").textContent = spec.info.description ?? "";
  const byTag = new Map((spec.tags ?? []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = op.tags?.[0] ?? "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(spec, path, method, op, item.parameters ?? []));
    }
  }
  const sections = [...byTag].filter(([, ops]) => ops.length).map(([tag, ops]) => {
    const about = spec.tags?.find((t) => t.name === tag)?.description;
    return el("section", { "aria-label": tag }, el("h2", { text: tag }), about ? el("p", { text: about }) : null, ...ops);
  });
  $("#operations").replaceChildren(...sections);
}

async function main() {
  const session = loadSession();
  if (session) $("#token-form").elements.token.value = session.accessToken;
  $("#token-form").addEventListener("submit", (event) => event.preventDefault());
  try {
    const { body } = await send("GET", "/docs/openapi.json");
    renderSpec(body);
    const count = document.querySelectorAll(".op").length;
    $("#status").textContent = `${count} operations.`;
  } catch (err) {
    $("#status").textContent = `The API description could not be loaded: ${err.message}`;
    $("#status").dataset.kind = "error";
  }
}

main();
