// The catalog: the last ListFeatures answer, shared by the pages (feature lists for the
// inputs, key names for the entity fields).

import type { Feature } from "./gen/osprey/v1/feature_pb";
import type { ListFeaturesResponse } from "./gen/osprey/v1/registry_pb";
import { registry } from "./api";

let last: ListFeaturesResponse | undefined;
const listeners: ((r: ListFeaturesResponse) => void)[] = [];

/** load lists the features again and tells the listeners; it throws what the call threw. */
export async function load(): Promise<ListFeaturesResponse> {
  const r = await registry().listFeatures({});
  last = r;
  for (const f of listeners) f(r);
  return r;
}

/** latest is the last list loaded, if any. */
export function latest(): ListFeaturesResponse | undefined {
  return last;
}

/** onLoad calls f with every list loaded. */
export function onLoad(f: (r: ListFeaturesResponse) => void): void {
  listeners.push(f);
}

/** featureOf finds the feature a selector names: fraud.amount+avg@-1[hash] → fraud.amount. */
export function featureOf(selector: string): Feature | undefined {
  const fqn = baseName(selector);
  const fs = last?.features ?? [];
  return fs.find((f) => f.fqn === fqn) ?? fs.find((f) => f.fqn === `default.${fqn}`);
}

/** baseName strips a selector's aggregation, version and encoding. */
export function baseName(selector: string): string {
  return selector.trim().replace(/\[.*$/, "").replace(/@.*$/, "").replace(/\+.*$/, "").toLowerCase();
}

/** selectorList fills a <datalist> with the features' FQNs (and, with aggregations, their +aggr selectors). */
export function fillDatalist(dl: HTMLDataListElement, withAggregations: boolean): void {
  dl.replaceChildren();
  for (const f of last?.features ?? []) {
    dl.append(new Option(f.fqn));
    if (!withAggregations) continue;
    for (const a of f.aggregations) dl.append(new Option(`${f.fqn}+${a}`));
    for (let i = 1; i <= (f.keepPrevious?.versions ?? 0); i++) dl.append(new Option(`${f.fqn}@-${i}`));
  }
}
