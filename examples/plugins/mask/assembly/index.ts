// mask: an Osprey encoder plugin. Export `encode`.
//
// Input:  {"version":1,"feature":"user.email","primitive":"string","value":"alice@example.com","config":{...}}
// Output: {"value":"a****@example.com"}
//
// An email address (text@text) keeps the first character of its local part and the whole
// domain; any other string keeps its first and last characters (a 2-character string keeps
// its first, a 1-character one becomes one mask character). Characters are Unicode code
// points. The mask character is the setting `mask_char` (input config, then Extism config),
// "*" when unset or empty. A value that is not a string fails the call.

import { fail, featureName, inputError, output, readInput, setting } from "../../lib/extism";
import { quote } from "../../lib/json";

// s split into code points, each as a string.
function codePoints(s: string): Array<string> {
  const out = new Array<string>();
  let i = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    let n = 1;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) n = 2;
    }
    out.push(s.substr(i, n));
    i += n;
  }
  return out;
}

function keepFirst(cps: Array<string>, maskChar: string): string {
  let out = cps[0];
  for (let i = 1; i < cps.length; i++) out += maskChar;
  return out;
}

function mask(s: string, maskChar: string): string {
  const at = s.lastIndexOf("@");
  if (at > 0 && at < s.length - 1) {
    return keepFirst(codePoints(s.substring(0, at)), maskChar) + s.substring(at);
  }
  const cps = codePoints(s);
  const n = cps.length;
  if (n == 0) return "";
  if (n == 1) return maskChar;
  if (n == 2) return cps[0] + maskChar;
  let out = cps[0];
  for (let i = 1; i < n - 1; i++) out += maskChar;
  return out + cps[n - 1];
}

export function encode(): i32 {
  const input = readInput();
  if (input === null) return fail("mask: " + inputError);
  const value = input.get("value");
  if (value === null) return fail("mask: " + featureName(input) + ": input has no value");
  if (!value.isString()) {
    return fail("mask: " + featureName(input) + ": value must be a string, got " + value.kindName());
  }
  let maskChar = setting(input, "mask_char");
  if (maskChar === null || maskChar.length == 0) maskChar = "*";
  output("{\"value\":" + quote(mask(value.str, maskChar)) + "}");
  return 0;
}
