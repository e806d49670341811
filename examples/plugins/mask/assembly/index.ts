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

function isHigh(c: i32): bool { return c >= 0xd800 && c <= 0xdbff; }
function isLow(c: i32): bool { return c >= 0xdc00 && c <= 0xdfff; }

// UTF-16 units of the code point that starts at i.
function unitsAt(s: string, i: i32): i32 {
  return isHigh(s.charCodeAt(i)) && i + 1 < s.length && isLow(s.charCodeAt(i + 1)) ? 2 : 1;
}

// Code points in s (a lone surrogate counts as one).
function countCodePoints(s: string): i32 {
  let n = 0;
  for (let i = 0; i < s.length; i += unitsAt(s, i)) n++;
  return n;
}

// Linear in the string's length: one repeat, no concatenation in a loop.
function mask(s: string, maskChar: string): string {
  const at = s.lastIndexOf("@");
  if (at > 0 && at < s.length - 1) {
    const local = s.substring(0, at);
    const first = unitsAt(local, 0);
    return local.substring(0, first) + maskChar.repeat(countCodePoints(local) - 1) + s.substring(at);
  }
  const n = countCodePoints(s);
  if (n == 0) return "";
  if (n == 1) return maskChar;
  const first = unitsAt(s, 0);
  if (n == 2) return s.substring(0, first) + maskChar;
  let lastStart = s.length - 1;
  if (lastStart > 0 && isLow(s.charCodeAt(lastStart)) && isHigh(s.charCodeAt(lastStart - 1))) lastStart--;
  return s.substring(0, first) + maskChar.repeat(n - 2) + s.substring(lastStart);
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
