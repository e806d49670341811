// The Live page: Watch a feature for some entities (or all), over a server-streaming
// Connect call, with a live chart of the recent values and a log of the changes.

import { createContextValues } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { engine, isCanceled, onResponseHeaders } from "./api";
import * as catalog from "./catalog";
import { Chart } from "./chart";
import { badge, field, h, replace } from "./dom";
import { WriteOutcome, type WatchResponse } from "./gen/osprey/v1/engine_pb";
import { formatKeys, formatTime, formatValue, numericValue } from "./format";
import { errorBox, keysEditor, section } from "./ui";

/** LivePage is the Live page. */
export interface LivePage {
  el: HTMLElement;
  /** open fills the feature, ready to watch. */
  open(fqn: string): void;
}

const maxRows = 100;

/** livePage builds the Live page. */
export function livePage(): LivePage {
  const dl = h("datalist", { id: "live-features" });
  const fqnInput = h("input", { type: "text", name: "watch-fqn", list: "live-features", placeholder: "fraud.limit", autocomplete: "off", spellcheck: "false", required: true });
  const keys = keysEditor("watch", true);
  const aggr = h("select", { name: "watch-aggregation" });
  const aggrField = field("chart", aggr);
  aggrField.hidden = true;
  const startBtn = h("button", { type: "submit" }, "Watch");
  const status = h("div", { class: "status", "data-testid": "watch-status" });
  const chart = new Chart();
  const tbody = h("tbody");
  const table = h("table", { class: "grid events", "data-testid": "events" }, h("thead", null, h("tr", null, ["time", "entity", "op", "value", ""].map((t) => h("th", null, t)))), tbody);

  let ctrl: AbortController | undefined;
  let count = 0;

  const sync = () => {
    const f = catalog.featureOf(fqnInput.value);
    keys.setFeature(f);
    const names = f?.aggregations ?? [];
    aggrField.hidden = names.length === 0;
    if (aggr.options.length !== names.length || [...aggr.options].some((o, i) => o.value !== names[i])) {
      aggr.replaceChildren(...names.map((a) => new Option(`+${a}`, a, a === "sum", a === "sum")));
    }
  };
  fqnInput.addEventListener("input", sync);
  fqnInput.addEventListener("change", sync);
  catalog.onLoad(() => {
    catalog.fillDatalist(dl, false);
    sync();
  });

  const stop = () => {
    ctrl?.abort();
    ctrl = undefined;
    startBtn.textContent = "Watch";
    startBtn.classList.remove("danger");
  };

  const onEvent = (ev: WatchResponse) => {
    count++;
    const ts = ev.timestamp ? timestampDate(ev.timestamp).getTime() : Date.now();
    const entity = formatKeys(ev.keys);
    const superseded = ev.outcome === WriteOutcome.SUPERSEDED;
    const n = numericValue(ev.value, aggr.value);
    if (n !== undefined && !superseded) chart.add(entity, { t: ts, v: n });
    tbody.prepend(
      h(
        "tr",
        { class: superseded ? "superseded" : "" },
        h("td", { class: "muted" }, formatTime(ev.timestamp)),
        h("td", null, h("code", null, entity)),
        h("td", null, ev.op),
        h("td", { class: "value" }, formatValue(ev.value)),
        h("td", null, superseded ? badge("superseded", "stale") : null),
      ),
    );
    while (tbody.rows.length > maxRows) tbody.deleteRow(-1);
    status.dataset.count = String(count);
    status.querySelector(".count")!.textContent = `${count} change${count === 1 ? "" : "s"}`;
  };

  const start = async () => {
    stop();
    const fqn = fqnInput.value.trim();
    if (!fqn) {
      fqnInput.focus();
      return;
    }
    const k = keys.get();
    const entities = Object.keys(k).length ? [{ keys: k }] : [];
    const c = new AbortController();
    ctrl = c;
    count = 0;
    chart.clear();
    tbody.replaceChildren();
    startBtn.textContent = "Stop";
    startBtn.classList.add("danger");
    const what = `${fqn} for ${formatKeys(k)}`;
    status.dataset.state = "connecting";
    replace(status, h("span", { class: "dot" }), `connecting: ${what}…`, " ", h("span", { class: "count muted" }));
    const established = () => {
      if (ctrl !== c) return;
      status.dataset.state = "watching";
      replace(status, h("span", { class: "dot live" }), `watching ${what}`, " · ", h("span", { class: "count muted" }, "0 changes"));
    };
    try {
      const stream = engine().watch({ fqn, entities }, { signal: c.signal, contextValues: createContextValues().set(onResponseHeaders, established) });
      for await (const ev of stream) {
        if (ctrl !== c) break;
        onEvent(ev);
      }
      if (ctrl === c) {
        status.dataset.state = "ended";
        replace(status, `the stream of ${what} ended`);
      }
    } catch (e) {
      if (ctrl !== c || isCanceled(e)) return;
      status.dataset.state = "error";
      replace(status, errorBox(e, `Watch ${fqn}`));
    } finally {
      if (ctrl === c) stop();
    }
  };
  keys.onEnter(() => void start());

  const form = h(
    "form",
    {
      class: "form",
      onsubmit: (ev: Event) => {
        ev.preventDefault();
        if (ctrl) {
          stop();
          status.dataset.state = "stopped";
          replace(status, "stopped");
        } else void start();
      },
    },
    h("div", { class: "row" }, field("feature", fqnInput), keys.el, aggrField, h("div", { class: "actions" }, startBtn)),
    h("p", { class: "hint" }, "Leave the keys empty to watch every entity."),
    dl,
  );
  aggr.addEventListener("change", () => chart.clear());
  const el = h("div", { class: "page" }, section("Watch a feature", form, status, chart.el, table));
  return {
    el,
    open(fqn) {
      if (fqnInput.value.trim() !== fqn) stop();
      fqnInput.value = fqn;
      sync();
      (el.querySelector<HTMLInputElement>("input[data-key], input[data-free]") ?? fqnInput).focus();
    },
  };
}
