// Builds the console into ../dist (committed, embedded by package console): the bundle of
// src/main.ts and its CSS under dist/assets/ with content hashes in their names (served as
// immutable), and dist/index.html naming them. The output depends only on the sources and
// the locked packages, so `go tool task console:check` can rebuild and compare.
import * as esbuild from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "..", "dist");

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, "assets"), { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: ["es2022", "chrome111", "firefox111", "safari16.4"],
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  outdir: join(dist, "assets"),
  metafile: true,
  logLevel: "warning",
});

let js = "";
let css = "";
for (const out of Object.keys(result.metafile.outputs)) {
  const name = basename(out);
  if (name.endsWith(".js")) js = name;
  else if (name.endsWith(".css")) css = name;
}
if (!js || !css) throw new Error(`build: expected one .js and one .css output, got ${Object.keys(result.metafile.outputs).join(", ")}`);

const html = (await readFile(join(here, "src", "index.html"), "utf8")).replace("{{js}}", `/assets/${js}`).replace("{{css}}", `/assets/${css}`);
await writeFile(join(dist, "index.html"), html);

// The third-party packages in the bundle, with their licenses (their packages ship no
// LICENSE files; package.json names the license).
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m && !packages.has(m[1])) {
    const pkg = JSON.parse(await readFile(join(here, "node_modules", m[1], "package.json"), "utf8"));
    const repo = typeof pkg.repository === "string" ? pkg.repository : pkg.repository?.url ?? "";
    packages.set(m[1], `${pkg.name} ${pkg.version}\n  license: ${pkg.license}\n  source: ${repo.replace(/^git\+/, "")}`);
  }
}
await writeFile(
  join(dist, "licenses.txt"),
  `The Osprey console bundles these packages (assets/${js}):\n\n${[...packages.keys()].sort().map((k) => packages.get(k)).join("\n\n")}\n`,
);

const sizes = Object.entries(result.metafile.outputs).map(([out, o]) => `${basename(out)} ${(o.bytes / 1024).toFixed(1)} KiB`);
console.log(`console: built ../dist: index.html, ${sizes.join(", ")}`);
