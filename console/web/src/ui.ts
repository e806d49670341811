// Shared pieces of the pages: the error box, the entity-keys editor, busy buttons.

import { describe, type ApiError } from "./api";
import { h, replace } from "./dom";
import type { Feature } from "./gen/osprey/v1/feature_pb";

/** errorBox shows an error from the server: its Connect code, message and field violations. */
export function errorBox(e: unknown | ApiError, context = ""): HTMLElement {
  const err: ApiError = isApiError(e) ? e : describe(e);
  return h(
    "div",
    { class: "error", role: "alert", "data-code": err.code },
    h("div", { class: "error-head" }, h("span", { class: "code" }, err.code), context ? h("span", { class: "context" }, context) : null),
    h("div", { class: "message" }, err.message),
    err.violations.length
      ? h(
          "ul",
          { class: "violations", "aria-label": "fields at fault" },
          err.violations.map((v) => h("li", null, h("code", null, v.field || "(request)"), " ", err.message.includes(v.description) ? h("span", { class: "muted" }, "is the field at fault") : v.description)),
        )
      : null,
    err.hint ? h("div", { class: "hint" }, err.hint) : null,
  );
}

function isApiError(e: unknown): e is ApiError {
  return typeof e === "object" && e !== null && "code" in e && "violations" in e && "hint" in e;
}

/** KeysEditor edits an entity's keys: one input per key the feature declares, or "k=v, …" free text for an unknown feature. */
export interface KeysEditor {
  el: HTMLElement;
  /** setFeature lays the inputs out for f's keys (free text when undefined), keeping the values typed. */
  setFeature(f: Feature | undefined): void;
  /** get returns the keys typed, without the empty ones. */
  get(): Record<string, string>;
  /** set fills the inputs. */
  set(keys: Record<string, string>): void;
  /** onEnter calls f when Enter is pressed in an input. */
  onEnter(f: () => void): void;
}

/** keysEditor makes a KeysEditor; name prefixes its inputs' names (read-key-card_id). */
export function keysEditor(name: string, optional = false): KeysEditor {
  const el = h("div", { class: "keys" });
  let keyNames: string[] | undefined;
  let values: Record<string, string> = {};
  let enter: (() => void) | undefined;
  const onKey = (ev: KeyboardEvent) => {
    if (ev.key === "Enter" && enter) {
      ev.preventDefault();
      enter();
    }
  };

  const collect = (): Record<string, string> => {
    const out: Record<string, string> = {};
    if (keyNames) {
      for (const input of el.querySelectorAll<HTMLInputElement>("input[data-key]")) {
        const v = input.value.trim();
        if (v) out[input.dataset.key!] = v;
      }
      return out;
    }
    const free = el.querySelector<HTMLInputElement>("input[data-free]");
    for (const part of (free?.value ?? "").split(",")) {
      const [k, ...rest] = part.split("=");
      if (k?.trim() && rest.length) out[k.trim()] = rest.join("=").trim();
    }
    return out;
  };

  const render = () => {
    const placeholder = optional ? "any" : "";
    if (keyNames && keyNames.length) {
      replace(
        el,
        keyNames.map((k) =>
          h(
            "label",
            { class: "field key" },
            h("span", { class: "label" }, k),
            h("input", { type: "text", name: `${name}-key-${k}`, "data-key": k, value: values[k] ?? "", placeholder, autocomplete: "off", spellcheck: "false", onkeydown: onKey }),
          ),
        ),
      );
      return;
    }
    const text = Object.entries(values)
      .map(([k, v]) => `${k}=${v}`)
      .join(", ");
    replace(
      el,
      h(
        "label",
        { class: "field key" },
        h("span", { class: "label" }, "keys"),
        h("input", { type: "text", name: `${name}-keys`, "data-free": "1", value: text, placeholder: "card_id=c1, device=d2", autocomplete: "off", spellcheck: "false", onkeydown: onKey }),
      ),
    );
  };
  render();

  return {
    el,
    setFeature(f) {
      const next = f ? f.keys : undefined;
      if (JSON.stringify(next) === JSON.stringify(keyNames)) return;
      values = { ...values, ...collect() };
      keyNames = next;
      render();
    },
    get: collect,
    set(keys) {
      values = { ...keys };
      render();
    },
    onEnter(f) {
      enter = f;
    },
  };
}

/** busy disables a button while an action runs, and shows that it runs. */
export async function busy<T>(button: HTMLButtonElement, action: () => Promise<T>): Promise<T> {
  button.disabled = true;
  button.classList.add("busy");
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.classList.remove("busy");
  }
}

/** section is a titled panel. */
export function section(title: string, ...body: (HTMLElement | null)[]): HTMLElement {
  return h("section", { class: "panel" }, h("h2", null, title), ...body);
}
