// What the three example plugins share on top of the Extism AssemblyScript PDK
// (@extism/as-pdk 1.0.0): reading the JSON input, writing the JSON output, failing a call
// with an Extism error, and reading a setting from the input's config or the Extism config.
//
// The PDK 1.0.0 has Host.input/output and Config.get but no way to set an error (no
// Host.setError; error_set is only declared in its lib/env.ts) and no HTTP wrapper, so those
// are here and in the geoip plugin.

import { Config, Host, Memory } from "@extism/as-pdk";
import { error_set } from "@extism/as-pdk/lib/env";
import { JSONValue, KIND_NUMBER, KIND_STRING, lastError, parse } from "./json";

// The input's version this plugin speaks.
export const CONTRACT_VERSION: i32 = 1;

// s, UTF-8 encoded, in a new kernel memory block. (The PDK's Memory.allocateString copies
// with one host call per byte; Memory.store moves 8 bytes a call.)
export function allocString(s: string): Memory {
  const bytes = Uint8Array.wrap(String.UTF8.encode(s));
  const mem = Memory.allocate(bytes.length);
  mem.store(bytes);
  return mem;
}

// Sets the Extism error for this call and returns 1, the export's return code: an
// exported function fails a call with `return fail("...")`. The host sees the message as
// the call's error (go-sdk: Plugin.Call's error) and the code as its rc.
export function fail(message: string): i32 {
  if (message.length == 0) message = "plugin failed";
  error_set(allocString(message).offset);
  return 1;
}

// Writes s, UTF-8 encoded, as the call's output. (The PDK's Host.outputString sets the
// output's length to the string's UTF-16 length, wrong for non-ASCII text, so it is not used.)
export function output(s: string): void {
  Host.output(Uint8Array.wrap(String.UTF8.encode(s)));
}

// The call's input parsed as a JSON object with "version": 1, or null with the reason in
// inputError.
export let inputError: string = "";

export function readInput(): JSONValue | null {
  const text = String.UTF8.decode(Host.input().buffer);
  const v = parse(text);
  if (v === null) {
    inputError = "input is not JSON: " + lastError;
    return null;
  }
  if (!v.isObject()) {
    inputError = "input is not a JSON object";
    return null;
  }
  const version = v.get("version");
  if (version !== null && !(version.isNumber() && version.num == <f64>CONTRACT_VERSION)) {
    inputError = "unsupported input version " + version.raw + " (this plugin speaks version 1)";
    return null;
  }
  inputError = "";
  return v;
}

// The input's "feature" member, or "" when missing.
export function featureName(input: JSONValue): string {
  const f = input.get("feature");
  return f !== null && f.isString() ? f.str : "";
}

// A setting: the input's config object first (a string, or a number as written), then the
// Extism config (the manifest's config map). null when neither has it.
export function setting(input: JSONValue, key: string): string | null {
  const config = input.get("config");
  if (config !== null) {
    const v = config.get(key);
    if (v !== null) {
      if (v.kind == KIND_STRING) return v.str;
      if (v.kind == KIND_NUMBER) return v.raw;
    }
  }
  return Config.get(key);
}

// The abort handler every plugin is built with (asc --use abort=lib/extism/abort):
// AssemblyScript calls it on a failed assertion, an out-of-bounds access or a `throw`, and
// traps right after it returns. It records the message as the Extism error; since the call
// then ends in a trap, a host reads it with Plugin.GetError() after the failed call (the
// go-sdk returns the trap, not this message, from Call).
export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let text = "abort: " + (message === null ? "(no message)" : message);
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  error_set(Memory.allocateString(text).offset);
}
