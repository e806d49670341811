// The Features page: every applied feature with its spec, the data sources, the plugins and
// the quarantined objects, searchable.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import { h, replace, badge, type Child } from "./dom";
import * as catalog from "./catalog";
import type { DataSource, Feature, Middleware, Plugin } from "./gen/osprey/v1/feature_pb";
import type { ListFeaturesResponse, QuarantinedObject } from "./gen/osprey/v1/registry_pb";
import { builderText, formatDuration, shortRef } from "./format";
import type { Nav } from "./nav";
import { busy, errorBox } from "./ui";

/** FeaturesPage is the Features page. */
export interface FeaturesPage {
  el: HTMLElement;
  /** refresh lists again. */
  refresh(): Promise<void>;
  /** search sets the search box. */
  search(q: string): void;
  /** showError shows why the list could not be loaded (null: clears it). */
  showError(e: unknown): void;
}

/** featuresPage builds the Features page. */
export function featuresPage(nav: Nav): FeaturesPage {
  const q = h("input", { type: "search", name: "search", placeholder: "Search features, keys, modules, labels…", autocomplete: "off", "aria-label": "Search" });
  const refreshBtn = h("button", { type: "button", class: "secondary" }, "Refresh");
  const counts = h("span", { class: "muted counts" });
  const status = h("div", { class: "status" });
  const body = h("div", { class: "catalog" });
  const el = h("div", { class: "page" }, h("div", { class: "toolbar" }, q, refreshBtn, counts), status, body);

  let list: ListFeaturesResponse | undefined;
  const render = () => {
    if (!list) return;
    const terms = q.value.toLowerCase().split(/\s+/).filter(Boolean);
    const match = (hay: string) => terms.every((t) => hay.includes(t));
    const features = list.features.filter((f) => match(featureHaystack(f)));
    const sources = list.dataSources.filter((d) => match(sourceHaystack(d)));
    const plugins = list.plugins.filter((p) => match(pluginHaystack(p)));
    const quarantined = list.quarantined.filter((o) => match(`${o.kind} ${o.fqn} ${o.error}`.toLowerCase()));
    counts.textContent = `${list.features.length} features · ${list.dataSources.length} data sources · ${list.plugins.length} plugins` + (list.quarantined.length ? ` · ${list.quarantined.length} quarantined` : "");
    replace(
      body,
      quarantined.length ? h("h2", { class: "danger-title" }, "Quarantined") : null,
      quarantined.length ? h("p", { class: "muted" }, "Stored objects that failed to restore when the server started: not served until applied again or deleted.") : null,
      quarantined.map(quarantineCard),
      h("h2", null, "Features"),
      features.length ? h("div", { class: "cards" }, features.map((f) => featureCard(f, nav))) : h("p", { class: "muted empty" }, terms.length ? "No feature matches." : "No features applied yet: see Apply."),
      sources.length ? h("h2", null, "Data sources") : null,
      sources.length ? sourcesTable(sources) : null,
      plugins.length ? h("h2", null, "Plugins") : null,
      plugins.length ? pluginsTable(plugins) : null,
    );
  };
  q.addEventListener("input", render);
  catalog.onLoad((r) => {
    list = r;
    render();
  });

  const refresh = async () => {
    try {
      await busy(refreshBtn, () => catalog.load());
      replace(status);
    } catch (e) {
      replace(status, errorBox(e, "ListFeatures"));
    }
  };
  refreshBtn.addEventListener("click", () => void refresh());
  return {
    el,
    refresh,
    search(text) {
      q.value = text;
      render();
    },
    showError(e) {
      replace(status, e === null ? null : errorBox(e, "ListFeatures"));
    },
  };
}

function featureHaystack(f: Feature): string {
  return [
    f.fqn,
    f.primitive,
    f.keys.join(" "),
    f.aggregations.join(" "),
    f.dataSource,
    builderText(f),
    f.builder?.module ?? "",
    f.middlewares.map((m) => `${m.name} ${m.module} ${m.plugin} ${m.function} ${m.stages.join(" ")}`).join(" "),
    f.dependencies.join(" "),
    Object.entries(f.labels).map(([k, v]) => `${k}=${v} ${k}:${v}`).join(" "),
  ]
    .join(" ")
    .toLowerCase();
}

function sourceHaystack(d: DataSource): string {
  return [d.fqn, d.kind, d.keyFields.join(" "), d.timestampField, Object.entries(d.labels).map(([k, v]) => `${k}=${v}`).join(" ")].join(" ").toLowerCase();
}

function pluginHaystack(p: Plugin): string {
  return [p.fqn, p.module, p.functions.map((f) => `${f.name} ${f.role}`).join(" "), p.allowedHosts.join(" ")].join(" ").toLowerCase();
}

function row(name: string, ...value: Child[]): HTMLElement[] {
  return [h("dt", null, name), h("dd", null, ...value)];
}

function labels(l: { [k: string]: string }): HTMLElement | null {
  const e = Object.entries(l);
  return e.length ? h("span", { class: "labels" }, e.map(([k, v]) => badge(`${k}=${v}`, "label"))) : null;
}

function middlewareText(m: Middleware): Child {
  const who = m.plugin ? [badge("plugin"), " ", h("code", null, `${m.plugin}.${m.function}`)] : m.module ? [h("code", null, m.name), " ", h("span", { class: "muted", title: m.module }, `wasm ${shortRef(m.module)}`)] : [h("code", null, m.name), " ", h("span", { class: "muted" }, "native")];
  return h("li", null, who, " ", h("span", { class: "muted" }, `${m.stages.join(", ")}${m.priority ? ` · priority ${m.priority}` : ""}`));
}

function featureCard(f: Feature, nav: Nav): HTMLElement {
  const b = f.builder;
  const builder: Child = b?.plugin
    ? [badge("plugin connector"), " ", h("code", null, `${b.plugin}.${b.function}`)]
    : b?.module
      ? [h("code", null, b.kind || "wasm"), " ", h("span", { class: "muted", title: b.module }, shortRef(b.module))]
      : h("code", null, b?.kind || "sourceless");
  const runnable = !!(b?.module || b?.plugin);
  return h(
    "article",
    { class: "card feature", "data-fqn": f.fqn },
    h(
      "header",
      null,
      h("h3", null, f.fqn),
      badge(f.primitive, "type"),
      f.aggregations.length ? badge(`window ${formatDuration(f.staleness)}`, "window") : null,
      f.keepPrevious && f.keepPrevious.versions > 0 ? badge(`@-1…@-${f.keepPrevious.versions}`, "versions") : null,
    ),
    h(
      "dl",
      null,
      row("keys", f.keys.map((k, i) => [i ? ", " : "", h("code", null, k)])),
      row("freshness", `${formatDuration(f.freshness)} fresh · ${formatDuration(f.staleness)} stale`),
      f.aggregations.length ? row("aggregations", f.aggregations.map((a, i) => [i ? " " : "", h("code", null, `+${a}`)]), f.granularity ? h("span", { class: "muted" }, ` · buckets of ${formatDuration(f.granularity)}`) : null) : null,
      f.keepPrevious && f.keepPrevious.versions > 0 ? row("previous", `${f.keepPrevious.versions} versions over ${formatDuration(f.keepPrevious.over)}`) : null,
      row("builder", builder),
      f.dataSource ? row("data source", h("code", null, f.dataSource)) : null,
      f.middlewares.length ? row("middlewares", h("ul", { class: "plain" }, f.middlewares.map(middlewareText))) : null,
      f.dependencies.length ? row("reads", f.dependencies.map((d, i) => [i ? ", " : "", h("code", null, d)])) : null,
      f.timeout ? row("timeout", formatDuration(f.timeout)) : null,
      Object.keys(f.labels).length ? row("labels", labels(f.labels)) : null,
    ),
    h(
      "footer",
      null,
      h("button", { type: "button", class: "link", "data-action": "read", onclick: () => nav.read(f.fqn) }, "Read"),
      h("button", { type: "button", class: "link", "data-action": "watch", onclick: () => nav.watch(f.fqn) }, "Watch"),
      runnable ? h("button", { type: "button", class: "link", "data-action": "try", onclick: () => nav.tryProgram(f.fqn) }, "Dry run") : null,
    ),
  );
}

function quarantineCard(o: QuarantinedObject): HTMLElement {
  return h(
    "article",
    { class: "card quarantined", "data-fqn": o.fqn },
    h("header", null, h("h3", null, o.fqn), badge(o.kind, "danger"), o.since ? h("span", { class: "muted" }, `since ${timestampDate(o.since).toISOString()}`) : null),
    h("pre", { class: "error-text" }, o.error),
  );
}

function sourcesTable(ds: DataSource[]): HTMLElement {
  return h(
    "table",
    { class: "grid" },
    h("thead", null, h("tr", null, ["FQN", "kind", "key fields", "timestamp field", "schema", "labels"].map((t) => h("th", null, t)))),
    h(
      "tbody",
      null,
      ds.map((d) =>
        h(
          "tr",
          { "data-fqn": d.fqn },
          h("td", null, h("code", null, d.fqn)),
          h("td", null, d.kind),
          h("td", null, d.keyFields.join(", ")),
          h("td", null, d.timestampField || h("span", { class: "muted" }, "time received")),
          h("td", null, d.schema ? h("code", { class: "clip", title: d.schema }, d.schema) : ""),
          h("td", null, labels(d.labels)),
        ),
      ),
    ),
  );
}

function pluginsTable(ps: Plugin[]): HTMLElement {
  return h(
    "table",
    { class: "grid" },
    h("thead", null, h("tr", null, ["FQN", "module", "functions", "allowed hosts", "limits", "labels"].map((t) => h("th", null, t)))),
    h(
      "tbody",
      null,
      ps.map((p) => {
        const l = p.limits;
        const limits = [
          l?.timeout ? `timeout ${formatDuration(l.timeout)}` : "",
          l?.memoryPages ? `${l.memoryPages} pages` : "",
          l?.httpResponseBytes ? `http ${l.httpResponseBytes} B` : "",
          l?.outputBytes ? `output ${l.outputBytes} B` : "",
        ].filter(Boolean);
        return h(
          "tr",
          { "data-fqn": p.fqn },
          h("td", null, h("code", null, p.fqn)),
          h("td", { title: p.module }, h("code", null, shortRef(p.module))),
          h("td", null, p.functions.map((fn, i) => [i ? ", " : "", h("code", null, fn.name), " ", h("span", { class: "muted" }, fn.role)])),
          h("td", null, p.allowedHosts.join(", ") || h("span", { class: "muted" }, "none")),
          h("td", null, limits.join(" · ") || h("span", { class: "muted" }, "defaults")),
          h("td", null, labels(p.labels)),
        );
      }),
    ),
  );
}
