// read.mjs reads a Parquet object with DuckDB, a Parquet reader independent of the one the
// historian is written with, and prints it on standard output as JSON lines, for
// historian/duckdb_test.go:
//
//	node read.mjs [--types] [--metadata] FILE.parquet
//
// --types first prints one line {"types": {column: DuckDB type, …}}; --metadata then prints
// one line {"metadata": {key: value, …}}, the object's key-value metadata. Then each row is
// one line, an object of every column in the file's order, converted so that nothing is
// lost in JSON:
//   - SQL NULL is null;
//   - BIGINT (and the other integers wider than 32 bits) is a string of its decimal digits,
//     since a JSON number holds integers exactly only up to 2^53; INTEGER, SMALLINT and
//     TINYINT are numbers;
//   - DOUBLE and FLOAT are numbers, except NaN, Infinity, -Infinity and -0, which JSON
//     numbers cannot spell: they are the strings "NaN", "Infinity", "-Infinity" and "-0";
//   - timestamps are ISO 8601 strings in UTC with nine fractional digits
//     (2026-12-01T10:15:00.123456789Z), whatever DuckDB's precision, or DuckDB's infinite
//     timestamps "infinity" and "-infinity";
//   - BOOLEAN and VARCHAR are themselves; BLOB is base64; lists are arrays of the same.
import { DuckDBInstance, DuckDBTypeId } from '@duckdb/node-api';

const args = process.argv.slice(2);
const flags = new Set(args.filter((a) => a.startsWith('--')));
const files = args.filter((a) => !a.startsWith('--'));
for (const f of flags) {
  if (f !== '--types' && f !== '--metadata') {
    fail(`unknown flag ${f}`);
  }
}
if (files.length !== 1) {
  fail('usage: node read.mjs [--types] [--metadata] FILE.parquet');
}
const file = files[0];

function fail(msg) {
  process.stderr.write(`read.mjs: ${msg}\n`);
  process.exit(2);
}

// INFINITY is how DuckDB keeps the timestamp 'infinity' (and -INFINITY '-infinity').
const INFINITY = 2n ** 63n - 1n;

// isoFromNanos formats Unix nanoseconds (a bigint) as 2026-12-01T10:15:00.123456789Z.
function isoFromNanos(ns) {
  let secs = ns / 1000000000n;
  let frac = ns % 1000000000n;
  if (frac < 0n) {
    secs -= 1n;
    frac += 1000000000n;
  }
  const date = new Date(Number(secs) * 1000);
  if (Number.isNaN(date.getTime())) {
    throw new Error(`timestamp ${ns} ns is outside JavaScript's dates`);
  }
  return date.toISOString().replace(/\.\d{3}Z$/, `.${frac.toString().padStart(9, '0')}Z`);
}

function convert(type, value) {
  if (value === null || value === undefined) {
    return null;
  }
  switch (type.typeId) {
    case DuckDBTypeId.BIGINT:
    case DuckDBTypeId.UBIGINT:
    case DuckDBTypeId.HUGEINT:
    case DuckDBTypeId.UHUGEINT:
      return value.toString();
    case DuckDBTypeId.DOUBLE:
    case DuckDBTypeId.FLOAT:
      if (Number.isNaN(value)) return 'NaN';
      if (value === Infinity) return 'Infinity';
      if (value === -Infinity) return '-Infinity';
      if (Object.is(value, -0)) return '-0';
      return value;
    case DuckDBTypeId.TIMESTAMP_NS:
      return isoFromNanos(value.nanos);
    case DuckDBTypeId.TIMESTAMP:
    case DuckDBTypeId.TIMESTAMP_TZ:
      if (value.micros === INFINITY) return 'infinity';
      if (value.micros === -INFINITY) return '-infinity';
      return isoFromNanos(value.micros * 1000n);
    case DuckDBTypeId.TIMESTAMP_MS:
      return isoFromNanos(value.millis * 1000000n);
    case DuckDBTypeId.TIMESTAMP_S:
      return isoFromNanos(value.seconds * 1000000000n);
    case DuckDBTypeId.LIST:
      return value.items.map((item) => convert(type.valueType, item));
    case DuckDBTypeId.BLOB:
      return Buffer.from(value.bytes).toString('base64');
    case DuckDBTypeId.BOOLEAN:
    case DuckDBTypeId.VARCHAR:
    case DuckDBTypeId.INTEGER:
    case DuckDBTypeId.SMALLINT:
    case DuckDBTypeId.TINYINT:
    case DuckDBTypeId.UINTEGER:
    case DuckDBTypeId.USMALLINT:
    case DuckDBTypeId.UTINYINT:
      return value;
  }
  throw new Error(`no JSON form for DuckDB type ${type}`);
}

// sqlString quotes s as a SQL string literal.
function sqlString(s) {
  return `'${s.replaceAll("'", "''")}'`;
}

const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
try {
  const reader = await conn.runAndReadAll(`SELECT * FROM read_parquet(${sqlString(file)})`);
  const names = reader.columnNames();
  const types = reader.columnTypes();
  const out = [];
  if (flags.has('--types')) {
    const t = {};
    names.forEach((n, i) => {
      t[n] = types[i].toString();
    });
    out.push(JSON.stringify({ types: t }));
  }
  if (flags.has('--metadata')) {
    const meta = await conn.runAndReadAll(
      `SELECT decode(key) AS key, decode(value) AS value FROM parquet_kv_metadata(${sqlString(file)})`,
    );
    const m = {};
    for (const [k, v] of meta.getRows()) {
      m[k] = v;
    }
    out.push(JSON.stringify({ metadata: m }));
  }
  for (const row of reader.getRows()) {
    const o = {};
    names.forEach((n, i) => {
      o[n] = convert(types[i], row[i]);
    });
    out.push(JSON.stringify(o));
  }
  process.stdout.write(out.length ? out.join('\n') + '\n' : '');
} finally {
  conn.closeSync();
  instance.closeSync();
}
