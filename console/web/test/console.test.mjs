// Browser tests of the console: Debian's Chromium driven by playwright-core, against real
// osprey servers that e2e/console_test.go starts (and passes here in the environment):
//
//   OSPREY_URL          a server without tokens, whose --cors-origins allows OSPREY_STATIC_URL
//   OSPREY_STATIC_URL   a second origin serving the same console/dist (a plain static server)
//   OSPREY_TOKEN_URL    a server with --tokens OSPREY_WRITE_TOKEN:write,OSPREY_READ_TOKEN:read
//                       (and the same --cors-origins)
//   OSPREY_WASM         a Wasm program to upload: examples/fraud's amount.wasm
//   CHROMIUM            the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR      where a failing test's screenshot goes (default: the OS temp dir)
//
// Each scenario runs over the same origin (the page served by the API's server) and from the
// second origin (the page pointed at the API through its API field, so calls are CORS).
// Run: node --test console/web/test/ (or through `go test ./e2e -run Console`).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`console tests: ${name} is not set (run them through go test ./e2e -run Console)`);
  return v;
};
const API = env("OSPREY_URL");
const STATIC = env("OSPREY_STATIC_URL");
const TOKEN_API = env("OSPREY_TOKEN_URL");
const WRITE_TOKEN = env("OSPREY_WRITE_TOKEN");
const READ_TOKEN = env("OSPREY_READ_TOKEN");
const WASM = env("OSPREY_WASM");
const shots = env("SCREENSHOT_DIR", tmpdir());
mkdirSync(shots, { recursive: true });
const timeout = 15_000;

let browser;
before(async () => {
  browser = await chromium.launch({ executablePath: env("CHROMIUM", "/usr/bin/chromium"), args: ["--no-sandbox"] });
});
after(async () => {
  await browser?.close();
});

// call makes a Connect JSON call from Node: the writes "made elsewhere".
async function call(base, procedure, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`${base}/osprey.v1.${procedure}`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${procedure}: HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

const apply = (base, manifest, token) => call(base, "RegistryService/ApplyFeature", { manifest: Buffer.from(manifest).toString("base64") }, token);
const set = (base, fqn, keys, value, token, timestamp) => call(base, "EngineService/Set", { fqn, keys, value, ...(timestamp ? { timestamp } : {}) }, token);

function features(ns) {
  return `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: limit, namespace: ${ns}}
spec:
  primitive: float
  freshness: 24h
  staleness: 720h
  keys: [card_id]
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: spend, namespace: ${ns}}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: [card_id]
  builder: {aggr: [sum, count, avg, max], aggrGranularity: 1m}
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: city, namespace: ${ns}}
spec:
  primitive: string
  freshness: 10m
  staleness: 24h
  keys: [user_id]
  keepPrevious: {versions: 2, over: 168h}
`;
}

// withPage runs f on a fresh page of the console and, when it fails, saves a screenshot and
// names it in the error.
async function withPage(name, f) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.problems = problems;
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  try {
    await f(page, problems);
  } catch (e) {
    const path = join(shots, `console-${name.replace(/[^a-z0-9]+/gi, "-")}.png`);
    try {
      await page.screenshot({ path, fullPage: true });
      e.message += `\n  screenshot: ${path}`;
    } catch (se) {
      e.message += `\n  (no screenshot: ${se.message})`;
    }
    if (problems.length) e.message += `\n  in the page:\n    ${problems.join("\n    ")}`;
    throw e;
  } finally {
    await context.close();
  }
}

// waitText waits until the locator's text matches re.
async function waitText(locator, re, what = String(re)) {
  const deadline = Date.now() + timeout;
  let last = "";
  for (;;) {
    try {
      last = (await locator.first().innerText({ timeout: 1000 })) ?? "";
      if (re.test(last)) return last;
    } catch {
      // not there yet
    }
    if (Date.now() > deadline) assert.fail(`waiting for ${what}: last text was ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// open loads the console: from the API's own origin, or from the second origin with the
// API field pointed at api. With a token, it signs in.
async function open(page, mode, api, token) {
  if (mode === "same-origin") {
    await page.goto(`${api}/`);
  } else {
    await page.goto(`${STATIC}/`);
  }
  if (mode !== "same-origin" || token) {
    if (mode !== "same-origin") await page.fill("input[name=api]", api);
    if (token) await page.fill("input[name=token]", token);
    await page.click(".connection button[type=submit]");
  }
  await waitText(page.locator("[data-testid=conn-status]"), /features/, "the console to connect");
  // From the second origin, the page first called its own origin, which serves no API (404).
  if (mode !== "same-origin") page.problems.length = 0;
}

async function tab(page, name) {
  await page.click(`.tabs a[data-tab=${name}]`);
}

// Applies each namespace's features before the scenarios run.
before(async () => {
  for (const ns of ["same", "cross"]) await apply(API, features(ns));
  await apply(TOKEN_API, features("tok"), WRITE_TOKEN);
});

for (const mode of ["same-origin", "cross-origin"]) {
  const ns = mode === "same-origin" ? "same" : "cross";
  describe(mode, () => {
    test("the feature list shows every feature's spec, and searches", () =>
      withPage(`${mode} list`, async (page, problems) => {
        await open(page, mode, API);
        const spend = page.locator(`article.feature[data-fqn="${ns}.spend"]`);
        await waitText(spend, /\+sum[\s\S]*\+avg/, "spend's aggregations");
        await waitText(spend, /1m fresh · 1h stale/, "spend's freshness");
        await waitText(page.locator(`article.feature[data-fqn="${ns}.city"]`), /2 versions over 168h/, "city's previous versions");
        await page.fill("input[name=search]", `${ns}.lim`);
        await waitText(page.locator(".counts"), /features/);
        assert.equal(await page.locator("article.feature").count(), 1, "search keeps only the matching feature");
        assert.deepEqual(problems, []);
      }));

    test("read: a value, its timestamp and freshness; every aggregation; previous versions", () =>
      withPage(`${mode} read`, async (page, problems) => {
        await set(API, `${ns}.limit`, { card_id: "c1" }, 500);
        await set(API, `${ns}.spend`, { card_id: "c1" }, 10);
        await set(API, `${ns}.spend`, { card_id: "c1" }, 30);
        const now = Date.now();
        await set(API, `${ns}.city`, { user_id: "u1" }, "Paris", undefined, new Date(now - 120_000).toISOString());
        await set(API, `${ns}.city`, { user_id: "u1" }, "Lyon", undefined, new Date(now - 60_000).toISOString());
        await open(page, mode, API);

        // From the feature's card to Read, the keys laid out from its spec.
        await page.click(`article.feature[data-fqn="${ns}.limit"] button[data-action=read]`);
        await page.fill("input[name=read-key-card_id]", "c1");
        await page.click("form:has(input[name=read-selector]) button[type=submit]");
        const result = page.locator("[data-testid=read-result]");
        await waitText(result.locator("[data-testid=read-value]"), /^500$/, "the value read");
        await waitText(result, /fresh/, "fresh");
        await waitText(result.locator("[data-testid=read-timestamp]"), /^at \d{4}-\d\d-\d\dT/, "the timestamp");

        await page.fill("input[name=read-selector]", `${ns}.spend+avg`);
        await page.dispatchEvent("input[name=read-selector]", "input");
        await page.fill("input[name=read-key-card_id]", "c1");
        await page.click("form:has(input[name=read-selector]) button[type=submit]");
        await waitText(result.locator("[data-testid=read-value]"), /^20$/, "spend+avg");
        const aggs = page.locator("[data-testid=aggregations]");
        await waitText(aggs.locator(`tr[data-selector="${ns}.spend+sum"]`), /40/, "+sum");
        await waitText(aggs.locator(`tr[data-selector="${ns}.spend+count"]`), /2/, "+count");
        await waitText(aggs.locator(`tr[data-selector="${ns}.spend+max"]`), /30/, "+max");

        await page.fill("input[name=read-selector]", `${ns}.city`);
        await page.dispatchEvent("input[name=read-selector]", "input");
        await page.fill("input[name=read-key-user_id]", "u1");
        await page.click("form:has(input[name=read-selector]) button[type=submit]");
        await waitText(result.locator("[data-testid=read-value]"), /^"Lyon"$/, "city");
        await waitText(page.locator(`[data-testid=previous] tr[data-selector="${ns}.city@-1"]`), /"Paris"/, "city@-1");
        await waitText(page.locator(`[data-testid=previous] tr[data-selector="${ns}.city@-2"]`), /absent/, "city@-2");
        assert.deepEqual(problems, []);
      }));

    test("watch: a write made elsewhere shows up, in the log and the chart", () =>
      withPage(`${mode} watch`, async (page, problems) => {
        await open(page, mode, API);
        await tab(page, "live");
        await page.fill("input[name=watch-fqn]", `${ns}.limit`);
        await page.dispatchEvent("input[name=watch-fqn]", "input");
        await page.fill("input[name=watch-key-card_id]", "c7");
        await page.click("form:has(input[name=watch-fqn]) button[type=submit]");
        const status = page.locator("[data-testid=watch-status]");
        await page.waitForSelector("[data-testid=watch-status][data-state=watching]", { timeout });
        await set(API, `${ns}.limit`, { card_id: "c7" }, 600);
        await set(API, `${ns}.limit`, { card_id: "other" }, 1); // another entity: not shown
        await set(API, `${ns}.limit`, { card_id: "c7" }, 700);
        await waitText(status, /2 changes/, "two changes counted");
        const events = page.locator("[data-testid=events] tbody");
        await waitText(events.locator("tr").nth(0), /card_id=c7[\s\S]*set[\s\S]*700/, "the latest change first");
        await waitText(events.locator("tr").nth(1), /600/, "the earlier change");
        await waitText(page.locator("[data-testid=chart] .legend"), /card_id=c7:\s*700/, "the chart's latest value");
        assert.equal(await page.locator("[data-testid=chart] polyline").count(), 1);
        // Stop ends the stream.
        await page.click("form:has(input[name=watch-fqn]) button[type=submit]");
        await page.waitForSelector("[data-testid=watch-status][data-state=stopped]", { timeout });
        assert.deepEqual(problems, []);
      }));

    test("apply: the dry-run diff first, then the apply, then the feature in the list; a program dry run", () =>
      withPage(`${mode} apply`, async (page, problems) => {
        await open(page, mode, API);
        await tab(page, "apply");
        // The limit document is unchanged; the others are new, one with an uploaded module.
        const manifest = `${features(ns).split("---")[0]}---
apiVersion: osprey.dev/v1alpha1
kind: DataSource
metadata: {name: transactions, namespace: ${ns}}
spec:
  kind: rows
  keyFields: [card_id]
  timestampField: ts
---
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: amount, namespace: ${ns}}
spec:
  primitive: float
  freshness: 30m
  staleness: 1h
  keys: [card_id]
  dataSource: ${ns}.transactions
  builder:
    module: programs/amount.wasm
    aggr: [sum, count]
    aggrGranularity: 1m
`;
        await page.fill("textarea[name=manifest]", manifest);
        await waitText(page.locator(".refs"), /programs\/amount\.wasm missing/, "the module the manifest names, missing");
        await page.setInputFiles("input[name=modules]", WASM);
        assert.equal(await page.inputValue("input[name=module-path]"), "programs/amount.wasm", "the upload is keyed by the path the manifest names");
        await waitText(page.locator(".refs"), /programs\/amount\.wasm ✓/, "the module attached");

        await page.click("form:has(textarea[name=manifest]) button[type=submit]");
        const plan = page.locator("[data-testid=plan]");
        await waitText(plan, /Dry run/, "the dry run");
        await waitText(plan.locator(`tr[data-fqn="${ns}.limit"]`), /unchanged/, "limit unchanged");
        await waitText(plan.locator(`tr[data-fqn="${ns}.transactions"]`), /created/, "transactions created");
        await waitText(plan.locator(`tr[data-fqn="${ns}.amount"]`), /created/, "amount created");
        const listed = await call(API, "RegistryService/ListFeatures", {});
        assert.ok(!listed.features?.some((f) => f.fqn === `${ns}.amount`), "a dry run applies nothing");

        await waitText(page.locator("[data-testid=confirm-apply]"), /^Apply 2 changes$/, "the confirm button");
        await page.click("[data-testid=confirm-apply]");
        const applied = page.locator("[data-testid=applied]");
        await waitText(applied, /Applied/, "the apply");
        await page.click(`[data-testid=applied] button:text('See ${ns}.amount in Features')`);
        const card = page.locator(`article.feature[data-fqn="${ns}.amount"]`);
        await waitText(card, /wasm sha256:/, "the new feature in the list, its module");
        await waitText(card, new RegExp(`${ns}\\.transactions`), "its data source");

        // The program on a sample row, from the card's Dry run.
        await card.locator("button[data-action=try]").click();
        await page.fill("textarea[name=try-row]", JSON.stringify({ card_id: "c9", amount_cents: 705, status: "approved", ts: new Date().toISOString() }));
        await page.click("form:has(input[name=try-fqn]) button[type=submit]");
        const tried = page.locator("[data-testid=try-result]");
        await waitText(tried, /7\.05/, "the program's value");
        await waitText(tried, /card_id=c9/, "the entity");
        await waitText(tried, /nothing was written/, "nothing written");
        assert.deepEqual(problems, []);
      }));

    test("server errors: the Connect code, message and field violations", () =>
      withPage(`${mode} errors`, async (page) => {
        await open(page, mode, API);
        await tab(page, "read");
        await page.fill("input[name=read-selector]", `${ns}.limit+median`);
        await page.dispatchEvent("input[name=read-selector]", "input");
        await page.fill("input[name=read-key-card_id]", "c1");
        await page.click("form:has(input[name=read-selector]) button[type=submit]");
        const err = page.locator(".result .error");
        await waitText(err.locator(".code"), /^invalid_argument$/, "the code");
        await waitText(err.locator(".message"), /unknown aggregation "median"/, "the message");
        await waitText(err.locator(".violations"), /selector/, "the field at fault");

        await tab(page, "apply");
        await page.fill("textarea[name=manifest]", `apiVersion: osprey.dev/v1alpha1\nkind: Feature\nmetadata: {name: broken, namespace: ${ns}}\nspec:\n  primitive: complex\n  keys: [id]\n`);
        await page.click("form:has(textarea[name=manifest]) button[type=submit]");
        const aerr = page.locator("form:has(textarea[name=manifest]) + .result .error");
        await waitText(aerr.locator(".code"), /^invalid_argument$/, "the apply's code");
        await waitText(aerr.locator(".message"), /primitive/, "the apply's message");
        await waitText(aerr.locator(".violations"), /manifest/, "the apply's field");
        assert.equal(await page.locator("[data-testid=confirm-apply]").isVisible(), false, "no confirm after a failed dry run");
      }));

    test("tokens: signed out the API refuses; signed in it answers; a read token cannot apply", () =>
      withPage(`${mode} tokens`, async (page) => {
        await set(TOKEN_API, "tok.limit", { card_id: "c1" }, 42, WRITE_TOKEN);
        if (mode === "same-origin") await page.goto(`${TOKEN_API}/`);
        else {
          await page.goto(`${STATIC}/`);
          await page.fill("input[name=api]", TOKEN_API);
          await page.click(".connection button[type=submit]");
        }
        await waitText(page.locator("[data-testid=conn-status]"), /unauthenticated/, "refused without a token");
        await waitText(page.locator(".status .error .code"), /^unauthenticated$/, "the error on the Features page");

        await page.fill("input[name=token]", READ_TOKEN);
        await page.click(".connection button[type=submit]");
        await waitText(page.locator("[data-testid=conn-status]"), /3 features/, "signed in");
        assert.equal(await page.evaluate(() => sessionStorage.getItem("osprey.console.token")), READ_TOKEN, "the token is kept in sessionStorage");
        await page.reload();
        await waitText(page.locator("[data-testid=conn-status]"), /3 features/, "still signed in after a reload");

        await page.click(`article.feature[data-fqn="tok.limit"] button[data-action=read]`);
        await page.fill("input[name=read-key-card_id]", "c1");
        await page.click("form:has(input[name=read-selector]) button[type=submit]");
        await waitText(page.locator("[data-testid=read-value]"), /^42$/, "a read with the read token");

        await tab(page, "apply");
        await page.fill("textarea[name=manifest]", features("tok"));
        await page.click("form:has(textarea[name=manifest]) button[type=submit]");
        await waitText(page.locator("form:has(textarea[name=manifest]) + .result .error .code"), /^permission_denied$/, "a read token cannot apply");

        // A watch with the write token (its Authorization header on a streaming call).
        await page.fill("input[name=token]", WRITE_TOKEN);
        await page.click(".connection button[type=submit]");
        await waitText(page.locator("[data-testid=conn-status]"), /3 features/, "signed in with the write token");
        await tab(page, "live");
        await page.fill("input[name=watch-fqn]", "tok.limit");
        await page.dispatchEvent("input[name=watch-fqn]", "input");
        await page.click("form:has(input[name=watch-fqn]) button[type=submit]");
        await page.waitForSelector("[data-testid=watch-status][data-state=watching]", { timeout });
        await set(TOKEN_API, "tok.limit", { card_id: `w-${mode}` }, 43, WRITE_TOKEN);
        await waitText(page.locator("[data-testid=events] tbody tr"), new RegExp(`card_id=w-${mode}[\\s\\S]*43`), "the watched write");

        await page.click(".connection button:text('Sign out')");
        await waitText(page.locator("[data-testid=conn-status]"), /unauthenticated/, "signed out");
        assert.equal(await page.evaluate(() => sessionStorage.getItem("osprey.console.token")), null, "the token is forgotten");
      }));
  });
}
