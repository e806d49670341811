// A small JSON reader and writer for the example plugins. AssemblyScript has no JSON in its
// standard library and the Extism PDK brings none, so the plugins share this one.
//
// AssemblyScript has no catchable exceptions: parse() returns null on bad input and leaves
// the reason in lastError, so a plugin can fail the Extism call with it.

export const KIND_NULL: i32 = 0;
export const KIND_BOOL: i32 = 1;
export const KIND_NUMBER: i32 = 2;
export const KIND_STRING: i32 = 3;
export const KIND_ARRAY: i32 = 4;
export const KIND_OBJECT: i32 = 5;

const MAX_DEPTH: i32 = 64;

export class JSONValue {
  kind: i32 = KIND_NULL;
  // The value's exact source text, so a plugin can hand a value back unchanged.
  raw: string = "";
  boolValue: bool = false;
  num: f64 = 0;
  str: string = "";
  items: Array<JSONValue> = new Array<JSONValue>();
  keys: Array<string> = new Array<string>();
  values: Array<JSONValue> = new Array<JSONValue>();

  isNull(): bool { return this.kind == KIND_NULL; }
  isNumber(): bool { return this.kind == KIND_NUMBER; }
  isString(): bool { return this.kind == KIND_STRING; }
  isObject(): bool { return this.kind == KIND_OBJECT; }

  // The member named key of an object (the last one if repeated), or null.
  get(key: string): JSONValue | null {
    if (this.kind != KIND_OBJECT) return null;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (this.keys[i] == key) return this.values[i];
    }
    return null;
  }

  kindName(): string {
    switch (this.kind) {
      case KIND_NULL: return "null";
      case KIND_BOOL: return "boolean";
      case KIND_NUMBER: return "number";
      case KIND_STRING: return "string";
      case KIND_ARRAY: return "array";
      default: return "object";
    }
  }
}

// Builds a string in one growing buffer of UTF-16 units. Appending to a string, or pushing
// pieces into an Array<string> and joining, costs time quadratic in the number of pieces
// (the first copies, the second makes the incremental collector rescan the growing array),
// and a 300,000-escape string took minutes that way.
export class StringBuilder {
  private buf: ArrayBuffer = new ArrayBuffer(64);
  private bytes: i32 = 0;

  private reserve(extra: i32): void {
    const need = this.bytes + extra;
    const cap = this.buf.byteLength;
    if (need <= cap) return;
    let next = cap << 1;
    while (next < need) next <<= 1;
    const grown = new ArrayBuffer(next);
    memory.copy(changetype<usize>(grown), changetype<usize>(this.buf), <usize>this.bytes);
    this.buf = grown;
  }

  // s[start:end], all of s by default.
  add(s: string, start: i32 = 0, end: i32 = -1): void {
    if (end < 0) end = s.length;
    const n = (end - start) << 1;
    if (n <= 0) return;
    this.reserve(n);
    memory.copy(changetype<usize>(this.buf) + <usize>this.bytes, changetype<usize>(s) + (<usize>start << 1), <usize>n);
    this.bytes += n;
  }

  // One UTF-16 unit.
  unit(c: i32): void {
    this.reserve(2);
    store<u16>(changetype<usize>(this.buf) + <usize>this.bytes, <u16>c);
    this.bytes += 2;
  }

  toString(): string {
    return String.UTF16.decodeUnsafe(changetype<usize>(this.buf), <usize>this.bytes);
  }
}

export let lastError: string = "";

class Parser {
  src: string;
  pos: i32 = 0;
  err: string = "";

  constructor(src: string) { this.src = src; }

  fail(msg: string): JSONValue | null {
    if (this.err.length == 0) this.err = msg + " at offset " + this.pos.toString();
    return null;
  }

  peek(): i32 { return this.pos < this.src.length ? this.src.charCodeAt(this.pos) : -1; }

  ws(): void {
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d) this.pos++;
      else break;
    }
  }

  literal(word: string): bool {
    if (this.src.substr(this.pos, word.length) == word) {
      this.pos += word.length;
      return true;
    }
    return false;
  }

  value(depth: i32): JSONValue | null {
    if (depth > MAX_DEPTH) return this.fail("JSON nested too deeply");
    this.ws();
    const start = this.pos;
    const c = this.peek();
    const v = new JSONValue();
    if (c == 0x7b) { // {
      v.kind = KIND_OBJECT;
      this.pos++;
      this.ws();
      if (this.peek() == 0x7d) {
        this.pos++;
      } else {
        while (true) {
          this.ws();
          if (this.peek() != 0x22) return this.fail("expected a member name");
          const k = this.string();
          if (k === null) return null;
          this.ws();
          if (this.peek() != 0x3a) return this.fail("expected ':'");
          this.pos++;
          const m = this.value(depth + 1);
          if (m === null) return null;
          v.keys.push(k);
          v.values.push(m);
          this.ws();
          const d = this.peek();
          this.pos++;
          if (d == 0x2c) continue;
          if (d == 0x7d) break;
          this.pos--;
          return this.fail("expected ',' or '}'");
        }
      }
    } else if (c == 0x5b) { // [
      v.kind = KIND_ARRAY;
      this.pos++;
      this.ws();
      if (this.peek() == 0x5d) {
        this.pos++;
      } else {
        while (true) {
          const item = this.value(depth + 1);
          if (item === null) return null;
          v.items.push(item);
          this.ws();
          const d = this.peek();
          this.pos++;
          if (d == 0x2c) continue;
          if (d == 0x5d) break;
          this.pos--;
          return this.fail("expected ',' or ']'");
        }
      }
    } else if (c == 0x22) { // "
      const s = this.string();
      if (s === null) return null;
      v.kind = KIND_STRING;
      v.str = s;
    } else if (c == 0x2d || (c >= 0x30 && c <= 0x39)) {
      if (!this.number()) return this.fail("invalid number");
      v.kind = KIND_NUMBER;
      v.num = parseFloat(this.src.substring(start, this.pos));
    } else if (this.literal("true")) {
      v.kind = KIND_BOOL;
      v.boolValue = true;
    } else if (this.literal("false")) {
      v.kind = KIND_BOOL;
    } else if (this.literal("null")) {
      v.kind = KIND_NULL;
    } else {
      return this.fail(c < 0 ? "unexpected end of JSON" : "unexpected character");
    }
    v.raw = this.src.substring(start, this.pos);
    return v;
  }

  digits(): i32 {
    const start = this.pos;
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c < 0x30 || c > 0x39) break;
      this.pos++;
    }
    return this.pos - start;
  }

  // Consumes a number per the JSON grammar; false if it is malformed.
  number(): bool {
    if (this.peek() == 0x2d) this.pos++;
    if (this.peek() == 0x30) {
      this.pos++;
    } else if (this.digits() == 0) {
      return false;
    }
    if (this.peek() == 0x2e) {
      this.pos++;
      if (this.digits() == 0) return false;
    }
    const e = this.peek();
    if (e == 0x65 || e == 0x45) {
      this.pos++;
      const s = this.peek();
      if (s == 0x2b || s == 0x2d) this.pos++;
      if (this.digits() == 0) return false;
    }
    return true;
  }

  string(): string | null {
    this.pos++; // opening quote
    const out = new StringBuilder();
    let run = this.pos;
    while (true) {
      if (this.pos >= this.src.length) {
        this.fail("unterminated string");
        return null;
      }
      const c = this.src.charCodeAt(this.pos);
      if (c == 0x22) {
        out.add(this.src, run, this.pos);
        this.pos++;
        return out.toString();
      }
      if (c < 0x20) {
        this.fail("control character in string");
        return null;
      }
      if (c != 0x5c) {
        this.pos++;
        continue;
      }
      out.add(this.src, run, this.pos);
      this.pos++;
      const e = this.peek();
      this.pos++;
      if (e == 0x22 || e == 0x5c || e == 0x2f) out.unit(e);
      else if (e == 0x62) out.unit(0x08);
      else if (e == 0x66) out.unit(0x0c);
      else if (e == 0x6e) out.unit(0x0a);
      else if (e == 0x72) out.unit(0x0d);
      else if (e == 0x74) out.unit(0x09);
      else if (e == 0x75) {
        let code: i32 = 0;
        for (let i = 0; i < 4; i++) {
          const h = this.peek();
          this.pos++;
          let d: i32 = -1;
          if (h >= 0x30 && h <= 0x39) d = h - 0x30;
          else if (h >= 0x61 && h <= 0x66) d = h - 0x61 + 10;
          else if (h >= 0x41 && h <= 0x46) d = h - 0x41 + 10;
          if (d < 0) {
            this.fail("invalid \\u escape");
            return null;
          }
          code = code * 16 + d;
        }
        // UTF-16 code units pass through as they are: a surrogate pair written as two
        // escapes becomes the pair again.
        out.unit(code);
      } else {
        this.pos--;
        this.fail("invalid escape");
        return null;
      }
      run = this.pos;
    }
  }
}

// Parses a whole JSON text; null (and lastError) if it is not one JSON value.
export function parse(src: string): JSONValue | null {
  const p = new Parser(src);
  const v = p.value(0);
  if (v === null) {
    lastError = p.err;
    return null;
  }
  p.ws();
  if (p.pos != src.length) {
    p.fail("trailing data after the JSON value");
    lastError = p.err;
    return null;
  }
  lastError = "";
  return v;
}

const HEX = "0123456789abcdef";

// A JSON string literal for s.
export function quote(s: string): string {
  const out = new StringBuilder();
  out.unit(0x22);
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc = "";
    if (c == 0x22) esc = "\\\"";
    else if (c == 0x5c) esc = "\\\\";
    else if (c == 0x0a) esc = "\\n";
    else if (c == 0x0d) esc = "\\r";
    else if (c == 0x09) esc = "\\t";
    else if (c < 0x20) esc = "\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15);
    else continue;
    out.add(s, run, i);
    out.add(esc);
    run = i + 1;
  }
  out.add(s, run);
  out.unit(0x22);
  return out.toString();
}

// A JSON number for n: integers without a fraction ("0", not AssemblyScript's "0.0").
export function formatNumber(n: f64): string {
  if (!isFinite(n)) return "null";
  if (n == Math.floor(n) && Math.abs(n) < 9007199254740992.0) {
    if (n == 0) return "0"; // also -0
    return (<i64>n).toString();
  }
  return n.toString();
}
