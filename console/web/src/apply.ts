// The Apply page: paste a manifest, attach the Wasm modules it names, see the dry-run diff
// (what would be created, updated or left unchanged), then confirm the apply. And the dry
// run of a feature's program on a sample row.

import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { registry } from "./api";
import * as catalog from "./catalog";
import { badge, field, h, replace } from "./dom";
import type { AppliedObject } from "./gen/osprey/v1/registry_pb";
import { formatKeys, formatTime, formatValue } from "./format";
import type { Nav } from "./nav";
import { busy, errorBox, keysEditor, section } from "./ui";

/** ApplyPage is the Apply page. */
export interface ApplyPage {
  el: HTMLElement;
  /** tryProgram fills the program dry run with a feature. */
  tryProgram(fqn: string): void;
}

interface Module {
  file: File;
  path: HTMLInputElement;
}

/** moduleRefs finds the module paths a manifest names (builder.module, middlewares[].module, a Plugin's module). */
export function moduleRefs(manifest: string): string[] {
  const out = new Set<string>();
  for (const m of manifest.matchAll(/^[ \t-]*module:[ \t]*(["']?)([^"'\s#]+)\1/gm)) {
    if (!m[2].startsWith("sha256:")) out.add(m[2]);
  }
  // Flow style: {module: x.wasm, …}
  for (const m of manifest.matchAll(/[{,][ \t]*module:[ \t]*(["']?)([^"'\s,}#]+)\1/g)) {
    if (!m[2].startsWith("sha256:")) out.add(m[2]);
  }
  return [...out];
}

function baseName(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

/** applyPage builds the Apply page. */
export function applyPage(nav: Nav): ApplyPage {
  // --- Apply a manifest ---
  const manifest = h("textarea", { name: "manifest", rows: 16, spellcheck: "false", placeholder: "apiVersion: osprey.dev/v1alpha1\nkind: Feature\nmetadata: {name: limit, namespace: fraud}\nspec:\n  primitive: float\n  freshness: 24h\n  staleness: 720h\n  keys: [card_id]" });
  const manifestFile = h("input", { type: "file", name: "manifest-file", accept: ".yaml,.yml,text/yaml" });
  const moduleFiles = h("input", { type: "file", name: "modules", accept: ".wasm,application/wasm", multiple: true });
  const refs = h("div", { class: "refs" });
  const moduleList = h("div", { class: "modules" });
  const dryBtn = h("button", { type: "submit" }, "Dry run");
  const confirmBtn = h("button", { type: "button", class: "primary", hidden: true, "data-testid": "confirm-apply" }, "Apply");
  const cancelBtn = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel");
  const out = h("div", { class: "result", "aria-live": "polite" });
  const modules: Module[] = [];
  let planned: string | undefined; // what the dry run checked: the confirm applies only that

  const signature = () => JSON.stringify([manifest.value, modules.map((m) => [m.path.value, m.file.name, m.file.size, m.file.lastModified])]);
  const invalidate = () => {
    if (planned !== undefined && planned !== signature()) {
      planned = undefined;
      confirmBtn.hidden = cancelBtn.hidden = true;
      out.querySelector(".plan")?.classList.add("outdated");
    }
  };

  const renderRefs = () => {
    const named = moduleRefs(manifest.value);
    const have = new Set(modules.map((m) => m.path.value.trim()));
    replace(
      refs,
      named.length
        ? [h("span", { class: "muted" }, "The manifest names: "), named.map((p) => badge(`${p}${have.has(p) ? " ✓" : " missing"}`, have.has(p) ? "fresh" : "stale"))]
        : null,
    );
  };
  const renderModules = () => {
    replace(
      moduleList,
      modules.map((m, i) =>
        h(
          "div",
          { class: "module-row" },
          m.path,
          h("span", { class: "muted" }, `${m.file.name} · ${(m.file.size / 1024).toFixed(1)} KiB`),
          h(
            "button",
            {
              type: "button",
              class: "link",
              onclick: () => {
                modules.splice(i, 1);
                renderModules();
              },
            },
            "remove",
          ),
        ),
      ),
    );
    renderRefs();
    invalidate();
  };

  manifest.addEventListener("input", () => {
    renderRefs();
    invalidate();
  });
  manifestFile.addEventListener("change", async () => {
    const f = manifestFile.files?.[0];
    if (!f) return;
    manifest.value = await f.text();
    manifestFile.value = "";
    renderRefs();
    invalidate();
  });
  moduleFiles.addEventListener("change", () => {
    const named = moduleRefs(manifest.value);
    for (const file of moduleFiles.files ?? []) {
      const key = named.find((p) => baseName(p) === file.name) ?? file.name;
      const path = h("input", { type: "text", name: "module-path", value: key, "aria-label": `path of ${file.name} in the manifest`, spellcheck: "false" });
      path.addEventListener("input", () => {
        renderRefs();
        invalidate();
      });
      const existing = modules.findIndex((m) => m.path.value === key);
      if (existing >= 0) modules.splice(existing, 1);
      modules.push({ file, path });
    }
    moduleFiles.value = "";
    renderModules();
  });

  const request = async (dryRun: boolean) => {
    const mods: { [path: string]: Uint8Array } = {};
    for (const m of modules) mods[m.path.value.trim()] = new Uint8Array(await m.file.arrayBuffer());
    return registry().applyFeature({ manifest: new TextEncoder().encode(manifest.value), modules: mods, dryRun });
  };

  const dryRun = async () => {
    if (!manifest.value.trim()) {
      manifest.focus();
      return;
    }
    confirmBtn.hidden = cancelBtn.hidden = true;
    await busy(dryBtn, async () => {
      const sig = signature();
      try {
        const res = await request(true);
        planned = sig;
        const changes = res.applied.filter((a) => a.action !== "unchanged").length;
        replace(out, h("div", { class: "card plan", "data-testid": "plan" }, h("h3", null, "Dry run: nothing applied yet"), appliedTable(res.applied), h("p", { class: "muted" }, changes ? `${changes} of ${res.applied.length} objects would change.` : "Nothing would change.")));
        confirmBtn.textContent = changes ? `Apply ${changes} change${changes === 1 ? "" : "s"}` : "Apply anyway";
        confirmBtn.hidden = cancelBtn.hidden = false;
        confirmBtn.focus();
      } catch (e) {
        planned = undefined;
        replace(out, errorBox(e, "ApplyFeature (dry run)"));
      }
    });
  };

  const apply = async () => {
    if (planned === undefined || planned !== signature()) {
      invalidate();
      return;
    }
    await busy(confirmBtn, async () => {
      try {
        const res = await request(false);
        planned = undefined;
        confirmBtn.hidden = cancelBtn.hidden = true;
        const features = res.applied.filter((a) => a.kind === "Feature");
        const first = features.find((a) => a.action !== "unchanged") ?? features[0] ?? res.applied[0];
        replace(
          out,
          h(
            "div",
            { class: "card applied", "data-testid": "applied" },
            h("h3", null, "Applied"),
            appliedTable(res.applied),
            first ? h("p", null, h("button", { type: "button", class: "link", onclick: () => nav.features(first.fqn) }, `See ${first.fqn} in Features`)) : null,
          ),
        );
        void catalog.load().catch(() => {});
      } catch (e) {
        replace(out, errorBox(e, "ApplyFeature"));
      }
    });
  };
  confirmBtn.addEventListener("click", () => void apply());
  cancelBtn.addEventListener("click", () => {
    planned = undefined;
    confirmBtn.hidden = cancelBtn.hidden = true;
    replace(out);
  });

  const applyForm = h(
    "form",
    { class: "form", onsubmit: (ev: Event) => (ev.preventDefault(), void dryRun()) },
    field("manifest (YAML; documents separated by ---)", manifest),
    h("div", { class: "row" }, field("load a manifest file", manifestFile), field("Wasm modules", moduleFiles, "keyed by the path the manifest names them with")),
    refs,
    moduleList,
    h("div", { class: "actions" }, dryBtn, confirmBtn, cancelBtn),
  );

  // --- Dry-run a program ---
  const dl = h("datalist", { id: "try-features" });
  const tryFqn = h("input", { type: "text", name: "try-fqn", list: "try-features", placeholder: "fraud.amount", autocomplete: "off", spellcheck: "false", required: true });
  const tryKeys = keysEditor("try", true);
  const row = h("textarea", { name: "try-row", rows: 5, spellcheck: "false", placeholder: '{"card_id": "c9", "amount_cents": 705, "status": "approved"}' });
  const at = h("input", { type: "text", name: "try-timestamp", placeholder: "now (or 2026-01-02T15:04:05Z)", autocomplete: "off" });
  const tryBtn = h("button", { type: "submit" }, "Run");
  const tryOut = h("div", { class: "result", "aria-live": "polite" });
  const syncTry = () => tryKeys.setFeature(catalog.featureOf(tryFqn.value));
  tryFqn.addEventListener("input", syncTry);
  tryFqn.addEventListener("change", syncTry);
  catalog.onLoad((r) => {
    dl.replaceChildren(...r.features.filter((f) => f.builder?.module || f.builder?.plugin).map((f) => new Option(f.fqn)));
    syncTry();
  });

  const runTry = async () => {
    const fqn = tryFqn.value.trim();
    if (!fqn) {
      tryFqn.focus();
      return;
    }
    let rowJson: JsonValue | undefined;
    if (row.value.trim()) {
      try {
        rowJson = JSON.parse(row.value) as JsonValue;
      } catch (e) {
        replace(tryOut, errorBox({ code: "invalid_json", message: `the sample row is not JSON: ${(e as Error).message}`, violations: [], hint: "" }));
        return;
      }
      if (typeof rowJson !== "object" || rowJson === null || Array.isArray(rowJson)) {
        replace(tryOut, errorBox({ code: "invalid_json", message: "the sample row must be a JSON object: field name → value", violations: [], hint: "" }));
        return;
      }
    }
    let timestamp: Timestamp | undefined;
    if (at.value.trim()) {
      const d = new Date(at.value.trim());
      if (isNaN(d.getTime())) {
        replace(tryOut, errorBox({ code: "invalid_timestamp", message: `not a timestamp: ${at.value}`, violations: [], hint: "" }));
        return;
      }
      timestamp = timestampFromDate(d);
    }
    await busy(tryBtn, async () => {
      try {
        const res = await registry().dryRun({ fqn, keys: tryKeys.get(), row: rowJson as JsonObject | undefined, timestamp });
        replace(
          tryOut,
          h(
            "div",
            { class: "card value-card", "data-testid": "try-result" },
            h("div", { class: "value-head" }, h("code", null, res.fqn), h("span", { class: "muted" }, formatKeys(res.keys)), res.writes ? badge("would write", "fresh") : badge("writes nothing", "absent")),
            h("div", { class: "big-value" }, res.writes ? formatValue(res.value) : "no value"),
            h("div", { class: "muted" }, res.timestamp ? `at ${formatTime(res.timestamp)} · ` : "", "nothing was written"),
          ),
        );
      } catch (e) {
        replace(tryOut, errorBox(e, `DryRun ${fqn}`));
      }
    });
  };

  const tryForm = h(
    "form",
    { class: "form", onsubmit: (ev: Event) => (ev.preventDefault(), void runTry()) },
    h("div", { class: "row" }, field("feature", tryFqn), tryKeys.el, field("at", at)),
    field("sample row (JSON object, as the data source delivers it; empty: run as on request for the keys)", row),
    h("div", { class: "actions" }, tryBtn),
    dl,
  );

  const el = h("div", { class: "page" }, section("Apply a manifest", applyForm, out), section("Dry-run a program", tryForm, tryOut));
  return {
    el,
    tryProgram(fqn) {
      tryFqn.value = fqn;
      syncTry();
      replace(tryOut);
      row.focus();
    },
  };
}

function appliedTable(objs: AppliedObject[]): HTMLElement {
  const kind = (a: string) => (a === "created" ? "fresh" : a === "updated" ? "stale" : "absent");
  return h(
    "table",
    { class: "grid" },
    h("thead", null, h("tr", null, ["kind", "FQN", "action"].map((t) => h("th", null, t)))),
    h(
      "tbody",
      null,
      objs.map((o) => h("tr", { "data-fqn": o.fqn, "data-action": o.action }, h("td", null, o.kind), h("td", null, h("code", null, o.fqn)), h("td", null, badge(o.action, kind(o.action))))),
    ),
  );
}
