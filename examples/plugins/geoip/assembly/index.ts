// geoip: an Osprey connector plugin. Export `compute`.
//
// Input:  {"version":1,"feature":"geo.country","keys":{"ip":"1.2.3.4"},"config":{...}}
// Output: {"value":"FR"}
//
// It sends GET <endpoint>?ip=<ip> (the ip percent-encoded; "&ip=" when the endpoint already
// has a query) through the Extism host's HTTP function, so the host's allowed_hosts decides
// whether it may. `endpoint` is a setting (input config, then Extism config), e.g.
// http://127.0.0.1:8080/lookup. A 200 answer must be JSON {"country":"FR"} ("country": null
// gives {"value":null}); any other status fails the call with an error naming the status.

import { Memory } from "@extism/as-pdk";
import { http_request, length } from "@extism/as-pdk/lib/env";
import { allocString, fail, featureName, inputError, output, readInput, setting } from "../../lib/extism";
import { JSONValue, StringBuilder, parse, quote } from "../../lib/json";

// The PDK 1.0.0 declares http_request but not this one; the go-sdk exports it as () -> i32.
@external("extism:host/env", "http_status_code")
declare function http_status_code(): i32;

const HEX = "0123456789ABCDEF";

// Percent-encodes s (UTF-8) for a query value, keeping only RFC 3986 unreserved characters.
function queryEscape(s: string): string {
  const bytes = Uint8Array.wrap(String.UTF8.encode(s));
  const out = new StringBuilder();
  for (let i = 0; i < bytes.length; i++) {
    const b = <i32>bytes[i];
    if ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ||
        b == 0x2d || b == 0x2e || b == 0x5f || b == 0x7e) {
      out.unit(b);
    } else {
      out.unit(0x25); // %
      out.unit(HEX.charCodeAt(b >> 4));
      out.unit(HEX.charCodeAt(b & 15));
    }
  }
  return out.toString();
}

function snippet(s: string): string {
  const t = s.trim();
  return t.length > 200 ? t.substring(0, 200) + "..." : t;
}

export function compute(): i32 {
  const input = readInput();
  if (input === null) return fail("geoip: " + inputError);
  const feature = featureName(input);
  const keys = input.get("keys");
  const ip: JSONValue | null = keys === null ? null : keys.get("ip");
  if (ip === null || !ip.isString() || ip.str.length == 0) {
    return fail("geoip: " + feature + ": input keys have no \"ip\" string");
  }
  const endpoint = setting(input, "endpoint");
  if (endpoint === null || endpoint.length == 0) {
    return fail("geoip: " + feature + ": no endpoint configured (Extism config \"endpoint\")");
  }
  const url = endpoint + (endpoint.includes("?") ? "&" : "?") + "ip=" + queryEscape(ip.str);

  // The host function takes a JSON request and an optional body (0: none) and returns the
  // response body (0 when empty); the status comes from http_status_code afterwards. A
  // request the host refuses (allowed_hosts) or cannot make ends the call there, as a trap.
  const req = "{\"method\":\"GET\",\"url\":" + quote(url) + ",\"headers\":{\"Accept\":\"application/json\"}}";
  const bodyOffset = http_request(allocString(req).offset, 0);
  const status = http_status_code();
  const body = bodyOffset == 0 ? "" : new Memory(bodyOffset, length(bodyOffset)).toString();

  if (status != 200) {
    let msg = "geoip: " + feature + ": GET " + snippet(url) + " returned HTTP status " + status.toString();
    if (body.length > 0) msg += ": " + snippet(body);
    return fail(msg);
  }
  const answer = parse(body);
  if (answer === null || !answer.isObject()) {
    return fail("geoip: " + feature + ": lookup answer is not a JSON object: " + snippet(body));
  }
  const country = answer.get("country");
  if (country === null || !(country.isString() || country.isNull())) {
    return fail("geoip: " + feature + ": lookup answer has no \"country\" string: " + snippet(body));
  }
  output("{\"value\":" + (country.isNull() ? "null" : quote(country.str)) + "}");
  return 0;
}
