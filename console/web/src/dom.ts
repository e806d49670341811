// Small DOM helpers: the console builds its pages with plain DOM calls, no framework.

/** A child of h(): nodes, text, nothing (null, undefined, false), or arrays of them. */
export type Child = Node | string | number | null | undefined | false | Child[];

/** Attributes of h(): on* handlers, class, properties (value, checked, disabled, …) or attributes. */
export type Attrs = Record<string, unknown>;

const props = new Set(["value", "checked", "disabled", "hidden", "selected", "readOnly", "multiple", "open"]);

/** h creates an element with attributes and children: h("div", {class: "x"}, "text", child). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") {
        el.addEventListener(k.slice(2), v as EventListener);
      } else if (props.has(k)) {
        (el as unknown as Record<string, unknown>)[k] = v;
      } else {
        el.setAttribute(k, v === true ? "" : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

/** append adds children to a node. */
export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else parent.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

/** replace sets a node's children. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, children);
}

const svgNS = "http://www.w3.org/2000/svg";

/** s creates an SVG element with attributes and children. */
export function s(tag: string, attrs?: Record<string, string | number>, ...children: Child[]): SVGElement {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) el.setAttribute(k, String(v));
  append(el, children);
  return el as SVGElement;
}

/** field is a labelled form control. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  return h("label", { class: "field" }, h("span", { class: "label" }, label), control, hint ? h("span", { class: "hint" }, hint) : null);
}

/** badge is a small coloured label. */
export function badge(text: string, kind = ""): HTMLElement {
  return h("span", { class: `badge ${kind}`.trim() }, text);
}
