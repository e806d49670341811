// Formatting of the API's values for display.

import { timestampDate, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Value, WindowResult } from "./gen/osprey/v1/value_pb";
import type { Feature } from "./gen/osprey/v1/feature_pb";

/** aggregationNames are the window aggregations, in the order the API lists them. */
export const aggregationNames = ["sum", "count", "min", "max", "avg"] as const;

/** formatValue renders a Value as text; "absent" when there is none. */
export function formatValue(v: Value | undefined): string {
  if (!v) return "absent";
  const k = v.kind;
  switch (k.case) {
    case "intValue":
      return k.value.toString();
    case "floatValue":
      return formatNumber(k.value);
    case "stringValue":
      return JSON.stringify(k.value);
    case "boolValue":
      return String(k.value);
    case "timestampValue":
      return formatTime(k.value);
    case "intList":
      return `[${k.value.values.map((x) => x.toString()).join(", ")}]`;
    case "floatList":
      return `[${k.value.values.map(formatNumber).join(", ")}]`;
    case "stringList":
      return `[${k.value.values.map((x) => JSON.stringify(x)).join(", ")}]`;
    case "boolList":
      return `[${k.value.values.join(", ")}]`;
    case "timestampList":
      return `[${k.value.values.map(formatTime).join(", ")}]`;
    case "window":
      return windowEntries(k.value)
        .map(([a, x]) => `${a} ${formatNumber(x)}`)
        .join(", ");
    default:
      return "absent";
  }
}

/** windowEntries lists the aggregations a window holds, in API order. */
export function windowEntries(w: WindowResult): [string, number][] {
  const out: [string, number][] = [];
  for (const a of aggregationNames) {
    const x = w[a];
    if (x !== undefined) out.push([a, x]);
  }
  return out;
}

/** numericValue is a value as a number for charting: ints, floats, one window aggregation; undefined otherwise. */
export function numericValue(v: Value | undefined, aggregation = ""): number | undefined {
  if (!v) return undefined;
  const k = v.kind;
  switch (k.case) {
    case "intValue":
      return Number(k.value);
    case "floatValue":
      return k.value;
    case "boolValue":
      return k.value ? 1 : 0;
    case "window": {
      const e = windowEntries(k.value);
      const hit = e.find(([a]) => a === aggregation) ?? e[0];
      return hit?.[1];
    }
  }
  return undefined;
}

/** formatNumber prints a float compactly: to 10 significant digits, without trailing zeros. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  return String(Number(x.toPrecision(10)));
}

/** formatTime prints a timestamp as RFC 3339 in UTC, to the millisecond. */
export function formatTime(ts: Timestamp | undefined): string {
  if (!ts) return "";
  return timestampDate(ts).toISOString();
}

/** ago says how long ago a timestamp was: "12s ago", "3m ago", "in 5s". */
export function ago(ts: Timestamp | undefined, now = Date.now()): string {
  if (!ts) return "";
  const ms = now - timestampDate(ts).getTime();
  const abs = Math.abs(ms);
  let text: string;
  if (abs < 1000) return "just now";
  if (abs < 60_000) text = `${Math.round(abs / 1000)}s`;
  else if (abs < 3_600_000) text = `${Math.round(abs / 60_000)}m`;
  else if (abs < 86_400_000) text = `${Math.round(abs / 3_600_000)}h`;
  else text = `${Math.round(abs / 86_400_000)}d`;
  return ms >= 0 ? `${text} ago` : `in ${text}`;
}

/** formatDuration prints a Duration the way manifests write them: 30m, 1h, 200ms, 1h30m. */
export function formatDuration(d: Duration | undefined): string {
  if (!d) return "";
  let ms = Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
  if (ms === 0) return "0s";
  if (ms < 1000) return `${ms}ms`;
  const parts: string[] = [];
  const units: [string, number][] = [["h", 3_600_000], ["m", 60_000], ["s", 1000]];
  for (const [u, n] of units) {
    if (ms >= n) {
      parts.push(`${Math.floor(ms / n)}${u}`);
      ms %= n;
    }
  }
  if (ms) parts.push(`${ms}ms`);
  return parts.join("");
}

/** formatKeys prints an entity's keys: card_id=c1, device=d2. */
export function formatKeys(keys: { [k: string]: string }): string {
  const e = Object.entries(keys).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return e.length ? e.map(([k, v]) => `${k}=${v}`).join(", ") : "(all entities)";
}

/** isWindowed tells whether a feature aggregates over a window. */
export function isWindowed(f: Feature | undefined): boolean {
  return !!f && f.aggregations.length > 0;
}

/** builderText describes a feature's builder in a line. */
export function builderText(f: Feature): string {
  const b = f.builder;
  if (!b) return "sourceless";
  if (b.plugin) return `plugin ${b.plugin}.${b.function}`;
  if (b.module) return `${b.kind || "wasm"} ${b.module}`;
  return b.kind || "sourceless";
}

/** shortRef shortens a module digest for display: sha256:abcdef012345…. */
export function shortRef(ref: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(ref);
  return m ? `sha256:${m[1].slice(0, 12)}…` : ref;
}
