// The web app and the API docs in a real browser (Debian's Chromium through playwright-core)
// against a real edge-host serving the app: sign up, add todos with tags and a due date,
// search, filter by tag and state, edit, complete, delete, reload (state is the server's),
// changes from a second device appearing without a reload, a stale edit refused (412) and
// shown rather than saved over the newer one, the docs page rendering the spec and a
// "try it" call, log out and in. No page may break its CSP
// or log an error. Screenshots of each step go to SCREENSHOT_DIR.
//
//   node tests/browser.mjs http://127.0.0.1:3000
//
// Run by the e2e test `web::the_web_app_works_in_a_real_browser` (tests/tests/e2e/web.rs),
// which starts the host; exits non-zero with the failed step's message otherwise.
import { mkdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const base = (process.argv[2] ?? "").replace(/\/$/, "");
if (!base) {
  console.error("usage: node tests/browser.mjs <base url of the app>");
  process.exit(2);
}
const chromiumPath = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const shots = process.env.SCREENSHOT_DIR ?? fileURLToPath(new URL("../../target/browser-screenshots", import.meta.url));
mkdirSync(shots, { recursive: true });
const spec = JSON.parse(readFileSync(new URL("../dist/docs/openapi.json", import.meta.url), "utf8"));

const browser = await chromium.launch({
  executablePath: chromiumPath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--no-first-run"],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
const problems = [];
/** Answers a step provokes on purpose (Chromium logs each non-2xx fetch as an error). */
const expectedStatuses = new Set();
async function openPage(context) {
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (event) => {
      console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const status = /status of (\d{3})/.exec(message.text())?.[1];
    if (!expectedStatuses.has(Number(status))) problems.push(`console error: ${message.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  return page;
}
const page = await openPage(context);

let stepNumber = 0;
async function step(name, action) {
  stepNumber += 1;
  try {
    await action();
  } catch (err) {
    await page.screenshot({ path: `${shots}/failed-${stepNumber}.png`, fullPage: true }).catch(() => {});
    throw new Error(`step ${stepNumber} (${name}): ${err.message}`);
  }
  await page.screenshot({ path: `${shots}/${String(stepNumber).padStart(2, "0")}-${name.replace(/\W+/g, "-")}.png`, fullPage: true });
  console.log(`ok ${stepNumber} ${name}`);
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

async function expectTitles(expected, on = page) {
  const titles = () => on.locator("#todo-list .todo .title").allTextContents();
  await on.waitForFunction(
    (want) => {
      const got = [...document.querySelectorAll("#todo-list .todo .title")].map((n) => n.textContent);
      return JSON.stringify(got) === JSON.stringify(want);
    },
    expected,
  ).catch(async () => {
    throw new Error(`list shows ${JSON.stringify(await titles())}, expected ${JSON.stringify(expected)}`);
  });
}
const item = (title, on = page) => on.locator("#todo-list .todo", { has: on.locator(".title", { hasText: title }) });
async function applyFilters(fields) {
  const form = page.locator("#filters");
  for (const [name, value] of Object.entries(fields)) {
    const field = form.locator(`[name=${name}]`);
    if ((await field.evaluate((n) => n.tagName)) === "SELECT") await field.selectOption(value);
    else await field.fill(value);
  }
  await form.locator("button[type=submit]").click();
}

const username = `web_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6)}`;
const password = "correct horse battery staple 7";
const tomorrow = new Date(Date.now() + 86_400_000);
const dueLocal = `${tomorrow.getFullYear()}-${String(tomorrow.getMonth() + 1).padStart(2, "0")}-${String(tomorrow.getDate()).padStart(2, "0")}T09:30`;

try {
  await step("signed out at first", async () => {
    const response = await page.goto(`${base}/`);
    expect(response.status() === 200, `GET / answered ${response.status()}`);
    const csp = response.headers()["content-security-policy"] ?? "";
    expect(csp.includes("script-src 'self'"), `GET / has CSP ${JSON.stringify(csp)}`);
    await page.locator("#register-form").waitFor();
    expect(await page.locator("#todos").isHidden(), "the todo list shows before signing in");
  });

  await step("sign up", async () => {
    const form = page.locator("#register-form");
    await form.locator("[name=username]").fill(username);
    await form.locator("[name=email]").fill(`${username}@example.com`);
    await form.locator("[name=password]").fill(password);
    await form.locator("button[type=submit]").click();
    await page.locator("#todos").waitFor();
    expect((await page.locator("#whoami").textContent()) === username, "whoami does not name the new user");
    await page.locator("#empty").waitFor();
  });

  await step("add a todo with tags and a due date", async () => {
    const form = page.locator("#new-todo");
    await form.locator("[name=title]").fill("Buy oat milk");
    await form.locator("[name=tags]").fill("Groceries, errands, groceries");
    await form.locator("[name=due_at]").fill(dueLocal);
    await form.locator("[name=priority]").selectOption("2");
    await form.locator("button[type=submit]").click();
    await expectTitles(["Buy oat milk"]);
    const tags = await item("Buy oat milk").locator(".tag").allTextContents();
    expect(JSON.stringify(tags) === JSON.stringify(["errands", "groceries"]) || JSON.stringify(tags) === JSON.stringify(["groceries", "errands"]),
      `tags shown: ${JSON.stringify(tags)}`);
    const due = await item("Buy oat milk").locator(".due").textContent();
    expect(due.startsWith("due ") && due.includes(String(tomorrow.getDate())), `due shown: ${due}`);
    expect((await item("Buy oat milk").locator(".priority").textContent()) === "medium priority", "priority not shown");
  });

  await step("add a second todo with notes", async () => {
    const form = page.locator("#new-todo");
    await form.locator("[name=title]").fill("Write the quarterly report");
    await form.locator("[name=tags]").fill("work");
    await form.locator("[name=notes]").fill("Figures from the finance sheet");
    await form.locator("button[type=submit]").click();
    await expectTitles(["Write the quarterly report", "Buy oat milk"]);
  });

  await step("search", async () => {
    await applyFilters({ q: "finance" });
    await expectTitles(["Write the quarterly report"]);
    await applyFilters({ q: "nothing-matches-this" });
    await expectTitles([]);
    await page.locator("#empty").waitFor();
    await applyFilters({ q: "" });
    await expectTitles(["Write the quarterly report", "Buy oat milk"]);
  });

  await step("filter by a tag", async () => {
    await item("Buy oat milk").locator(".tag", { hasText: "groceries" }).click();
    await expectTitles(["Buy oat milk"]);
    await applyFilters({ tag: "" });
    await expectTitles(["Write the quarterly report", "Buy oat milk"]);
  });

  await step("complete a todo", async () => {
    await item("Buy oat milk").locator(".done").check();
    await page.locator("#todo-list .todo.completed", { hasText: "Buy oat milk" }).waitFor();
    await applyFilters({ completed: "true" });
    await expectTitles(["Buy oat milk"]);
    await applyFilters({ completed: "false" });
    await expectTitles(["Write the quarterly report"]);
    await applyFilters({ completed: "" });
  });

  await step("edit a todo", async () => {
    await item("Write the quarterly report").locator(".edit").click();
    const editor = page.locator("#todo-list .editor");
    await editor.locator("[name=title]").fill("Write the annual report");
    await editor.locator("button[type=submit]").click();
    await expectTitles(["Write the annual report", "Buy oat milk"]);
  });

  await step("reload keeps the session and the server's state", async () => {
    await page.reload();
    await page.locator("#todos").waitFor();
    await expectTitles(["Write the annual report", "Buy oat milk"]);
    expect(await item("Buy oat milk").evaluate((n) => n.classList.contains("completed")), "completion was not saved");
  });

  await step("delete a todo", async () => {
    await item("Write the annual report").locator(".delete").click();
    await expectTitles(["Buy oat milk"]);
    await page.reload();
    await expectTitles(["Buy oat milk"]);
  });

  let device = null;
  await step("changes made on another device appear without a reload", async () => {
    device = await openPage(await browser.newContext({ viewport: { width: 900, height: 800 } }));
    await device.goto(`${base}/`);
    const form = device.locator("#login-form");
    await form.locator("[name=username]").fill(username);
    await form.locator("[name=password]").fill(password);
    await form.locator("button[type=submit]").click();
    await expectTitles(["Buy oat milk"], device);
    await device.locator("#new-todo [name=title]").fill("Call the plumber");
    await device.locator("#new-todo button[type=submit]").click();
    await expectTitles(["Call the plumber", "Buy oat milk"], device);
    await expectTitles(["Call the plumber", "Buy oat milk"]);
    await item("Call the plumber", device).locator(".delete").click();
    await expectTitles(["Buy oat milk"]);
  });

  await step("a stale edit is refused and shown, not saved over the newer one", async () => {
    await item("Buy oat milk").locator(".edit").click();
    const editor = page.locator("#todo-list .editor");
    await editor.waitFor();
    // Meanwhile, on the other device:
    await item("Buy oat milk", device).locator(".edit").click();
    const other = device.locator("#todo-list .editor");
    await other.locator("[name=title]").fill("Buy oat milk and bread");
    await other.locator("button[type=submit]").click();
    await expectTitles(["Buy oat milk and bread"], device);
    expectedStatuses.add(412);
    await editor.locator("[name=title]").fill("Buy soy milk");
    await editor.locator("button[type=submit]").click();
    await page.locator("#status[data-kind=error]", { hasText: "changed elsewhere" }).waitFor();
    const shown = await editor.locator("[name=title]").inputValue();
    expect(shown === "Buy oat milk and bread", `the editor shows ${JSON.stringify(shown)}, not the newer version`);
    await editor.locator("[name=title]").fill("Buy soy milk");
    await editor.locator("button[type=submit]").click();
    await expectTitles(["Buy soy milk"]);
    await expectTitles(["Buy soy milk"], device);
    expectedStatuses.delete(412);
    await device.context().close();
  });

  await step("the docs render the spec", async () => {
    const response = await page.goto(`${base}/docs/`);
    expect(response.status() === 200, `GET /docs/ answered ${response.status()}`);
    const operations = Object.values(spec.paths).flatMap((item) =>
      ["get", "post", "put", "patch", "delete"].filter((method) => item[method]));
    await page.locator("#status", { hasText: `${operations.length} operations.` }).waitFor();
    expect((await page.locator("details.op").count()) === operations.length, "not every operation is listed");
    expect((await page.locator("#api-title").textContent()).startsWith(spec.info.title), "the spec's title is not shown");
  });

  await step("try it from the docs with the app's session", async () => {
    const token = await page.locator("#token-form [name=token]").inputValue();
    expect(token.split(".").length === 3, "the docs did not take the session's access token");
    const op = page.locator("details#listTodos");
    await op.locator("summary").click();
    await op.locator("input[name='query:tag']").fill("groceries");
    await op.locator("button[type=submit]").click();
    const result = op.locator("pre.result");
    await result.filter({ hasText: "HTTP 200" }).waitFor();
    expect((await result.textContent()).includes("Buy soy milk"), "try it did not list the user's todo");
  });

  await step("log out", async () => {
    await page.goto(`${base}/`);
    await page.locator("#logout").click();
    await page.locator("#login-form").waitFor();
    expect(await page.locator("#todos").isHidden(), "the list is still shown after logging out");
    await page.reload();
    await page.locator("#login-form").waitFor();
    expect(await page.evaluate(() => sessionStorage.length) === 0, "the session outlived logging out");
  });

  await step("log in again", async () => {
    const form = page.locator("#login-form");
    await form.locator("[name=username]").fill(username);
    expectedStatuses.add(401);
    await form.locator("[name=password]").fill("a wrong password 123");
    await form.locator("button[type=submit]").click();
    await page.locator("#status[data-kind=error]").waitFor();
    expect(await page.locator("#todos").isHidden(), "a wrong password signed in");
    expectedStatuses.delete(401);
    await form.locator("[name=password]").fill(password);
    await form.locator("button[type=submit]").click();
    await page.locator("#todos").waitFor();
    await expectTitles(["Buy soy milk"]);
  });

  expect(problems.length === 0, `the pages reported problems:\n${problems.join("\n")}`);
  console.log(`all ${stepNumber} steps passed; screenshots in ${shots}`);
} catch (err) {
  console.error(err.message);
  if (problems.length) console.error(`the pages also reported:\n${problems.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
