// The Read page: a feature's value for an entity, with its timestamp and freshness; every
// aggregation of a windowed feature; the previous versions of one that keeps them. And a
// small form to write a value.

import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { engine } from "./api";
import * as catalog from "./catalog";
import { badge, field, h, replace } from "./dom";
import type { Feature } from "./gen/osprey/v1/feature_pb";
import type { FeatureResult, GetResponse } from "./gen/osprey/v1/engine_pb";
import { WriteOutcome } from "./gen/osprey/v1/engine_pb";
import { ago, formatKeys, formatNumber, formatTime, formatValue, isWindowed, windowEntries } from "./format";
import { busy, errorBox, keysEditor, section } from "./ui";

/** ReadPage is the Read page. */
export interface ReadPage {
  el: HTMLElement;
  /** open fills the selector (and keys) and reads when the keys are complete. */
  open(selector: string, keys?: Record<string, string>): void;
}

/** freshness is the badge of a read: fresh, stale or absent. */
export function freshness(found: boolean, fresh: boolean): HTMLElement {
  return found ? (fresh ? badge("fresh", "fresh") : badge("stale", "stale")) : badge("absent", "absent");
}

/** readPage builds the Read page. */
export function readPage(): ReadPage {
  const dl = h("datalist", { id: "read-selectors" });
  const selector = h("input", { type: "text", name: "read-selector", list: "read-selectors", placeholder: "fraud.amount+avg, geo.city@-1, …", autocomplete: "off", spellcheck: "false", required: true });
  const keys = keysEditor("read");
  const readBtn = h("button", { type: "submit" }, "Read");
  const out = h("div", { class: "result", "aria-live": "polite" });

  const value = h("input", { type: "text", name: "write-value", placeholder: '500, "Paris", [1, 2], true', autocomplete: "off", spellcheck: "false" });
  const setBtn = h("button", { type: "submit", class: "secondary" }, "Set");
  const setOut = h("div", { class: "result" });

  const syncKeys = () => keys.setFeature(catalog.featureOf(selector.value));
  selector.addEventListener("input", syncKeys);
  selector.addEventListener("change", syncKeys);
  catalog.onLoad(() => {
    catalog.fillDatalist(dl, true);
    syncKeys();
  });

  const read = async () => {
    const sel = selector.value.trim();
    if (!sel) {
      selector.focus();
      return;
    }
    const k = keys.get();
    const f = catalog.featureOf(sel);
    await busy(readBtn, async () => {
      let res: GetResponse;
      try {
        res = await engine().get({ selector: sel, keys: k });
      } catch (e) {
        replace(out, errorBox(e, `Get ${sel}`));
        return;
      }
      const parts: HTMLElement[] = [mainResult(sel, k, res)];
      if (f && isWindowed(f)) parts.push(await aggregations(f, sel, k, res));
      if (f && (f.keepPrevious?.versions ?? 0) > 0 && !sel.includes("@")) parts.push(await previous(f, k));
      replace(out, parts);
    });
  };
  keys.onEnter(() => void read());

  const write = async () => {
    const sel = selector.value.trim();
    const f = catalog.featureOf(sel);
    const fqn = f?.fqn ?? catalog.baseName(sel);
    let v: JsonValue;
    const text = value.value.trim();
    try {
      v = JSON.parse(text) as JsonValue;
    } catch {
      v = text; // a bare word: a string
    }
    await busy(setBtn, async () => {
      try {
        const res = await engine().set({ fqn, keys: keys.get(), value: fromJson(ValueSchema, v) });
        const superseded = res.outcome === WriteOutcome.SUPERSEDED;
        replace(
          setOut,
          h(
            "div",
            { class: `notice ${superseded ? "warn" : "ok"}`, "data-testid": "set-result" },
            superseded ? `superseded: ${res.fqn} has a later value (at ${formatTime(res.currentTimestamp)})` : `ok ${res.fqn} = ${formatValue(res.value)}`,
          ),
        );
      } catch (e) {
        replace(setOut, errorBox(e, `Set ${fqn}`));
      }
    });
  };

  const form = h(
    "form",
    { class: "form", onsubmit: (ev: Event) => (ev.preventDefault(), void read()) },
    h("div", { class: "row" }, field("selector", selector), keys.el, h("div", { class: "actions" }, readBtn)),
    dl,
  );
  const writeForm = h(
    "form",
    { class: "form", onsubmit: (ev: Event) => (ev.preventDefault(), void write()) },
    h("div", { class: "row" }, field("value (JSON)", value), h("div", { class: "actions" }, setBtn)),
    h("p", { class: "hint" }, "Written with Set, to the feature and entity above."),
  );
  const el = h("div", { class: "page" }, section("Read a feature", form, out), section("Write a value", writeForm, setOut));

  return {
    el,
    open(sel, k) {
      selector.value = sel;
      syncKeys();
      if (k) keys.set(k);
      replace(out);
      replace(setOut);
      const f = catalog.featureOf(sel);
      const typed = keys.get();
      if (f && f.keys.length && f.keys.every((name) => typed[name])) void read();
      else (el.querySelector<HTMLInputElement>("input[data-key], input[data-free]") ?? selector).focus();
    },
  };
}

function mainResult(sel: string, keys: Record<string, string>, r: GetResponse): HTMLElement {
  return h(
    "div",
    { class: "card value-card", "data-testid": "read-result" },
    h("div", { class: "value-head" }, h("code", null, sel), h("span", { class: "muted" }, formatKeys(keys)), freshness(r.found, r.fresh)),
    h("div", { class: "big-value", "data-testid": "read-value" }, r.found ? formatValue(r.value) : "absent"),
    r.timestamp
      ? h("div", { class: "muted", "data-testid": "read-timestamp" }, `at ${formatTime(r.timestamp)} (${ago(r.timestamp)})`)
      : h("div", { class: "muted" }, "no value: never written, expired, or older than the feature's staleness"),
  );
}

async function aggregations(f: Feature, sel: string, keys: Record<string, string>, r: GetResponse): Promise<HTMLElement> {
  let window = r.value?.kind.case === "window" ? r.value.kind.value : undefined;
  let found = r.found;
  let fresh = r.fresh;
  if (!window && sel.includes("+")) {
    try {
      const all = await engine().get({ selector: f.fqn, keys });
      if (all.value?.kind.case === "window") window = all.value.kind.value;
      found = all.found;
      fresh = all.fresh;
    } catch (e) {
      return errorBox(e, `Get ${f.fqn}`);
    }
  }
  const values = new Map(window ? windowEntries(window) : []);
  return h(
    "div",
    { class: "card" },
    h("h3", null, "Aggregations over the window"),
    h(
      "table",
      { class: "grid", "data-testid": "aggregations" },
      h("thead", null, h("tr", null, h("th", null, "selector"), h("th", null, "value"), h("th", null, ""))),
      h(
        "tbody",
        null,
        f.aggregations.map((a) => {
          const v = values.get(a);
          return h("tr", { "data-selector": `${f.fqn}+${a}` }, h("td", null, h("code", null, `${f.fqn}+${a}`)), h("td", { class: "num" }, v === undefined ? "absent" : formatNumber(v)), h("td", null, freshness(found && v !== undefined, fresh)));
        }),
      ),
    ),
  );
}

async function previous(f: Feature, keys: Record<string, string>): Promise<HTMLElement> {
  const n = f.keepPrevious?.versions ?? 0;
  const selectors = Array.from({ length: n }, (_, i) => `${f.fqn}@-${i + 1}`);
  let cells: FeatureResult[];
  try {
    const res = await engine().getMany({ selectors, entities: [{ keys }] });
    cells = res.results[0]?.features ?? [];
  } catch (e) {
    return errorBox(e, "GetMany (previous versions)");
  }
  return h(
    "div",
    { class: "card" },
    h("h3", null, "Previous versions"),
    h(
      "table",
      { class: "grid", "data-testid": "previous" },
      h("thead", null, h("tr", null, ["selector", "value", "timestamp", ""].map((t) => h("th", null, t)))),
      h(
        "tbody",
        null,
        cells.map((c) =>
          h(
            "tr",
            { "data-selector": c.selector },
            h("td", null, h("code", null, c.selector)),
            h("td", null, c.error ? h("span", { class: "danger" }, c.error) : formatValue(c.value)),
            h("td", { class: "muted" }, formatTime(c.timestamp)),
            h("td", null, c.error ? null : freshness(c.found, c.fresh)),
          ),
        ),
      ),
    ),
  );
}
