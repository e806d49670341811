// The API: Connect clients for the server the console talks to, the connection settings
// (API base URL, bearer token) and the display form of errors.

import { Code, ConnectError, createClient, createContextKey, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { EngineService } from "./gen/osprey/v1/engine_pb";
import { RegistryService } from "./gen/osprey/v1/registry_pb";

const baseKey = "osprey.console.api";
const tokenKey = "osprey.console.token";

/** Settings are where the API is and how to authenticate to it. */
export interface Settings {
  /** The API's base URL, e.g. http://127.0.0.1:8080; the page's origin by default. */
  baseUrl: string;
  /** The bearer token, or "" for none. Kept in sessionStorage: gone when the tab closes. */
  token: string;
}

function initialSettings(): Settings {
  const q = new URLSearchParams(location.search).get("api");
  let baseUrl = q || storage(localStorage).getItem(baseKey) || "";
  if (!baseUrl) baseUrl = location.origin;
  return { baseUrl: trimSlash(baseUrl), token: storage(sessionStorage).getItem(tokenKey) ?? "" };
}

/** storage guards against storage being unavailable (some privacy modes throw). */
function storage(st: Storage): Pick<Storage, "getItem" | "setItem" | "removeItem"> {
  try {
    st.getItem("");
    return st;
  } catch {
    return { getItem: () => null, setItem: () => {}, removeItem: () => {} };
  }
}

function trimSlash(u: string): string {
  return u.trim().replace(/\/+$/, "");
}

let settings = initialSettings();
let engineClient: Client<typeof EngineService>;
let registryClient: Client<typeof RegistryService>;
const listeners: (() => void)[] = [];

function connect(): void {
  const auth: Interceptor = (next) => (req) => {
    if (settings.token) req.header.set("Authorization", `Bearer ${settings.token}`);
    return next(req);
  };
  const established: Interceptor = (next) => async (req) => {
    const res = await next(req);
    req.contextValues.get(onResponseHeaders)();
    return res;
  };
  // Binary: Wasm modules in ApplyFeature travel as bytes, not base64.
  const transport = createConnectTransport({ baseUrl: settings.baseUrl, useBinaryFormat: true, interceptors: [auth, established] });
  engineClient = createClient(EngineService, transport);
  registryClient = createClient(RegistryService, transport);
}
connect();

/** onResponseHeaders is a call's context value: called when the response headers arrive (a Watch is established). */
export const onResponseHeaders = createContextKey<() => void>(() => {}, { description: "osprey console: response headers arrived" });

/** current returns the settings in force. */
export function current(): Settings {
  return { ...settings };
}

/** configure changes the settings (stored: the base URL in localStorage, the token in sessionStorage) and tells the listeners. */
export function configure(next: Partial<Settings>): void {
  settings = { ...settings, ...next };
  settings.baseUrl = trimSlash(settings.baseUrl) || location.origin;
  if (settings.baseUrl === location.origin) storage(localStorage).removeItem(baseKey);
  else storage(localStorage).setItem(baseKey, settings.baseUrl);
  if (settings.token) storage(sessionStorage).setItem(tokenKey, settings.token);
  else storage(sessionStorage).removeItem(tokenKey);
  connect();
  for (const f of listeners) f();
}

/** onConfigure calls f after every change of the settings. */
export function onConfigure(f: () => void): void {
  listeners.push(f);
}

/** engine is the EngineService client. */
export function engine(): Client<typeof EngineService> {
  return engineClient;
}

/** registry is the RegistryService client. */
export function registry(): Client<typeof RegistryService> {
  return registryClient;
}

/** A field violation: a google.rpc.BadRequest detail the server attached to an error. */
export interface Violation {
  field: string;
  description: string;
}

/** ApiError is an error in the form the console shows it. */
export interface ApiError {
  /** The Connect code in its wire spelling, e.g. "invalid_argument". */
  code: string;
  /** The server's message, without the code. */
  message: string;
  /** The fields at fault, from google.rpc.BadRequest details. */
  violations: Violation[];
  /** A hint of what to do, from the console (not the server), or "". */
  hint: string;
}

/** codeName spells a Code as the Connect protocol does: Code.InvalidArgument → "invalid_argument". */
export function codeName(c: Code): string {
  const name = Code[c];
  return name ? name.replace(/[A-Z]/g, (m, i: number) => (i ? "_" : "") + m.toLowerCase()) : String(c);
}

const badRequestType = "google.rpc.BadRequest";

/** describe turns whatever a call threw into an ApiError. */
export function describe(e: unknown): ApiError {
  const err = ConnectError.from(e);
  const violations: Violation[] = [];
  for (const d of err.details) {
    if ("type" in d && d.type === badRequestType) {
      try {
        violations.push(...decodeBadRequest(d.value));
      } catch {
        // A detail we cannot read: the message still says what went wrong.
      }
    }
  }
  let hint = "";
  if (err.code === Code.Unauthenticated || err.code === Code.PermissionDenied) {
    hint = "Sign in with a bearer token that has the scope this call needs (Token, at the top right).";
  } else if (/^HTTP \d{3}$/.test(err.rawMessage)) {
    // An HTTP error without a Connect error body: not an Osprey API (a static server, a proxy).
    hint = `No Osprey API answers at ${settings.baseUrl}: set the API field (top right) to the server's URL.`;
  } else if (!err.isWireError && (err.code === Code.Unknown || err.code === Code.Unavailable) && /fetch|network|load failed/i.test(err.rawMessage)) {
    hint = `The API at ${settings.baseUrl} did not answer. Is the server running there? From another origin, its --cors-origins must allow ${location.origin}.`;
  }
  return { code: codeName(err.code), message: err.rawMessage, violations, hint };
}

/** decodeBadRequest reads the field violations of a binary google.rpc.BadRequest. */
function decodeBadRequest(bytes: Uint8Array): Violation[] {
  const out: Violation[] = [];
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 1 || wt !== WireType.LengthDelimited) {
      r.skip(wt);
      continue;
    }
    const fv = new BinaryReader(r.bytes());
    const v: Violation = { field: "", description: "" };
    while (fv.pos < fv.len) {
      const [fno, fwt] = fv.tag();
      if (fno === 1 && fwt === WireType.LengthDelimited) v.field = fv.string();
      else if (fno === 2 && fwt === WireType.LengthDelimited) v.description = fv.string();
      else fv.skip(fwt);
    }
    out.push(v);
  }
  return out;
}

/** isCanceled tells whether a call ended because the console cancelled it. */
export function isCanceled(e: unknown): boolean {
  return ConnectError.from(e).code === Code.Canceled;
}
