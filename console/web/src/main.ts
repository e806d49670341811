// Osprey's web console: the entry point. It lays out the header (the pages, the API base
// URL, the bearer token) and the four pages, and routes between them by the URL's hash.

import "./style.css";
import { configure, current, describe } from "./api";
import * as catalog from "./catalog";
import { h, replace } from "./dom";
import { applyPage } from "./apply";
import { featuresPage } from "./features";
import { livePage } from "./live";
import type { Nav } from "./nav";
import { readPage } from "./read";

type Tab = "features" | "read" | "live" | "apply";
const tabs: [Tab, string][] = [
  ["features", "Features"],
  ["read", "Read"],
  ["live", "Live"],
  ["apply", "Apply & try"],
];

const nav: Nav = {
  features(query) {
    show("features");
    if (query !== undefined) features.search(query);
  },
  read(selector) {
    show("read");
    read.open(selector);
  },
  watch(fqn) {
    show("live");
    live.open(fqn);
  },
  tryProgram(fqn) {
    show("apply");
    apply.tryProgram(fqn);
  },
};

const features = featuresPage(nav);
const read = readPage();
const live = livePage();
const apply = applyPage(nav);
const pages: Record<Tab, HTMLElement> = { features: features.el, read: read.el, live: live.el, apply: apply.el };

const tabLinks = tabs.map(([id, label]) => h("a", { href: `#${id}`, "data-tab": id }, label));

// The connection: the API's base URL and the bearer token.
const apiInput = h("input", { type: "url", name: "api", value: current().baseUrl, "aria-label": "API base URL", spellcheck: "false", size: 26 });
const tokenInput = h("input", { type: "password", name: "token", value: current().token, placeholder: "bearer token", "aria-label": "Bearer token", autocomplete: "off", size: 14 });
const connectBtn = h("button", { type: "submit" }, current().token ? "Connect" : "Sign in");
const signOut = h("button", { type: "button", class: "secondary", hidden: !current().token }, "Sign out");
const connStatus = h("span", { class: "conn", "data-testid": "conn-status", "data-state": "connecting" }, "connecting…");

const connect = async () => {
  connStatus.dataset.state = "connecting";
  replace(connStatus, "connecting…");
  try {
    await catalog.load(); // onLoad below shows it
    features.showError(null);
  } catch (e) {
    const err = describe(e);
    connStatus.dataset.state = "error";
    replace(connStatus, h("span", { class: "dot bad" }), err.code);
    connStatus.title = err.message;
    features.showError(e);
    if (err.code === "unauthenticated" || err.code === "permission_denied") tokenInput.focus();
  }
};

catalog.onLoad((r) => {
  connStatus.dataset.state = "ok";
  replace(connStatus, h("span", { class: "dot live" }), `${r.features.length} feature${r.features.length === 1 ? "" : "s"}`);
  connStatus.title = `connected to ${current().baseUrl}`;
});

const connForm = h(
  "form",
  {
    class: "connection",
    onsubmit: (ev: Event) => {
      ev.preventDefault();
      configure({ baseUrl: apiInput.value, token: tokenInput.value.trim() });
      apiInput.value = current().baseUrl;
      signOut.hidden = !current().token;
      connectBtn.textContent = current().token ? "Connect" : "Sign in";
      void connect();
    },
  },
  h("label", null, h("span", { class: "label" }, "API"), apiInput),
  h("label", null, h("span", { class: "label" }, "Token"), tokenInput),
  connectBtn,
  signOut,
  connStatus,
);
signOut.addEventListener("click", () => {
  tokenInput.value = "";
  configure({ token: "" });
  signOut.hidden = true;
  connectBtn.textContent = "Sign in";
  void connect();
});

const header = h("header", { class: "top" }, h("a", { class: "brand", href: "#features" }, h("span", { class: "logo" }, "◆"), "Osprey"), h("nav", { class: "tabs" }, tabLinks), connForm);
const main = h("main", null, Object.values(pages));
const foot = h("footer", { class: "foot muted" }, "Osprey console · ", h("a", { href: "licenses.txt" }, "third-party licenses"));
document.body.replaceChildren(header, main, foot);

function show(tab: Tab): void {
  for (const [id] of tabs) pages[id].hidden = id !== tab;
  for (const a of tabLinks) a.classList.toggle("active", a.dataset.tab === tab);
  if (location.hash.slice(1) !== tab) history.replaceState(null, "", `#${tab}`);
  document.title = `${tabs.find(([id]) => id === tab)![1]} · Osprey`;
}

function route(): void {
  const t = location.hash.slice(1) as Tab;
  show(pages[t] ? t : "features");
}
window.addEventListener("hashchange", route);
route();
void connect();
