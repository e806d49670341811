// A small live line chart in plain SVG: recent numeric values, one line per entity.

import { h, s } from "./dom";
import { formatNumber } from "./format";

/** A point: time (ms since the epoch) and value. */
export interface Point {
  t: number;
  v: number;
}

const colors = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];
const maxPoints = 120;
const maxSeries = colors.length;

/** Chart draws series of points as they arrive. */
export class Chart {
  readonly el: HTMLElement;
  private readonly svg: SVGElement;
  private readonly legend: HTMLElement;
  private series = new Map<string, Point[]>();

  constructor() {
    this.svg = s("svg", { class: "chart-svg", role: "img", "aria-label": "recent values" });
    this.legend = h("div", { class: "legend" });
    this.el = h("div", { class: "chart", "data-testid": "chart" }, this.svg, this.legend);
    new ResizeObserver(() => this.draw()).observe(this.el);
    this.draw();
  }

  /** add records a value of an entity's series and redraws. */
  add(name: string, p: Point): void {
    let pts = this.series.get(name);
    if (!pts) {
      if (this.series.size >= maxSeries) return; // the first entities seen keep their lines
      pts = [];
      this.series.set(name, pts);
    }
    pts.push(p);
    if (pts.length > maxPoints) pts.splice(0, pts.length - maxPoints);
    this.draw();
  }

  /** clear removes every series. */
  clear(): void {
    this.series.clear();
    this.draw();
  }

  /** points is the number of points drawn. */
  get points(): number {
    let n = 0;
    for (const p of this.series.values()) n += p.length;
    return n;
  }

  private draw(): void {
    const width = Math.max((this.el.clientWidth || 734) - 14, 240); // less the padding
    const height = 180;
    const pad = { l: 56, r: 12, t: 10, b: 22 };
    const svg = this.svg;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.replaceChildren();
    this.legend.replaceChildren();

    const all = [...this.series.values()].flat();
    if (!all.length) {
      svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "chart-empty" }, "Numeric values appear here as they are written."));
      return;
    }
    let t0 = Math.min(...all.map((p) => p.t));
    let t1 = Math.max(...all.map((p) => p.t));
    if (t1 - t0 < 10_000) t0 = t1 - 10_000;
    let v0 = Math.min(...all.map((p) => p.v));
    let v1 = Math.max(...all.map((p) => p.v));
    if (v0 === v1) {
      const d = Math.abs(v0) * 0.1 || 1;
      v0 -= d;
      v1 += d;
    } else {
      const d = (v1 - v0) * 0.08;
      v0 -= d;
      v1 += d;
    }
    const x = (t: number) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
    const y = (v: number) => pad.t + (1 - (v - v0) / (v1 - v0)) * (height - pad.t - pad.b);

    for (let i = 0; i <= 3; i++) {
      const v = v0 + ((v1 - v0) * i) / 3;
      svg.append(
        s("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid-line" }),
        s("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, formatNumber(Number(v.toPrecision(4)))),
      );
    }
    const clock = (t: number) => new Date(t).toISOString().slice(11, 19);
    svg.append(
      s("text", { x: pad.l, y: height - 6, class: "axis" }, clock(t0)),
      s("text", { x: width - pad.r, y: height - 6, "text-anchor": "end", class: "axis" }, clock(t1)),
    );

    let i = 0;
    for (const [name, pts] of this.series) {
      const color = colors[i++ % colors.length];
      const d = pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
      svg.append(s("polyline", { points: d, fill: "none", stroke: color, "stroke-width": 2, "stroke-linejoin": "round" }));
      for (const p of pts.slice(-30)) svg.append(s("circle", { cx: x(p.t), cy: y(p.v), r: 2.5, fill: color }));
      const last = pts[pts.length - 1];
      this.legend.append(h("span", { class: "legend-item" }, h("span", { class: "swatch", "data-color": color }), `${name}: `, h("strong", null, formatNumber(last.v))));
    }
    for (const sw of this.legend.querySelectorAll<HTMLElement>(".swatch")) sw.style.background = sw.dataset.color ?? "";
  }
}
