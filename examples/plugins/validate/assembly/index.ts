// validate: an Osprey middleware plugin. Export `handle`.
//
// Input:  {"version":1,"feature":"payments.amount","keys":{"account_id":"a1"},"op":"set",
//          "stage":"preSet","value":25000,"timestamp":"2026-12-01T10:00:00Z","config":{"max":"10000"}}
// Output: {"value": <value>}
//
// The limit is the setting `max` (input config, a string or a number, then Extism config).
// A number above it fails the call with an Extism error naming the value and the limit
// ("validate: payments.amount: value 25000 exceeds max 10000"); a negative number is
// replaced by 0; anything else (other numbers, strings, null, ...) comes back exactly as
// written in the input. With no `max` there is no limit; a `max` that is not a number fails.

import { fail, featureName, inputError, output, readInput, setting } from "../../lib/extism";
import { parse, quote } from "../../lib/json";

export function handle(): i32 {
  const input = readInput();
  if (input === null) return fail("validate: " + inputError);
  const feature = featureName(input);
  const value = input.get("value");
  if (value === null) return fail("validate: " + feature + ": input has no value");
  if (!value.isNumber()) {
    output("{\"value\":" + value.raw + "}");
    return 0;
  }
  const maxText = setting(input, "max");
  if (maxText !== null) {
    const max = parse(maxText.trim());
    if (max === null || !max.isNumber()) {
      return fail("validate: " + feature + ": config max " + quote(maxText) + " is not a number");
    }
    if (value.num > max.num) {
      return fail("validate: " + feature + ": value " + value.raw + " exceeds max " + max.raw);
    }
  }
  if (value.num < 0) {
    output("{\"value\":0}");
    return 0;
  }
  output("{\"value\":" + value.raw + "}");
  return 0;
}
