// Package examples embeds the example manifests and their prebuilt Wasm modules, so that
// `osprey dev` can apply them on a machine that has only the binary (no checkout, no Go).
//
// The modules are built by `go tool task examples` (examples/internal/build) into
// prebuilt/<name>/<dir>.wasm.gz and committed; the package's test fails when they are stale
// with the guests' sources, the guest SDK or the ABI.
package examples

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io"
	"path"
)

// Manifests holds every examples/*/*.yaml file.
//
//go:embed */*.yaml
var Manifests embed.FS

//go:embed prebuilt
var prebuilt embed.FS

// pluginModules holds the example Extism plugins, built from their AssemblyScript sources
// by examples/plugins/build.sh and committed (CI rebuilds them and fails when they differ).
//
//go:embed plugins/*/*.wasm
var pluginModules embed.FS

// Module returns the prebuilt Wasm module that the manifest file manifest (a path of
// Manifests, "fraud/features.yaml") names as ref (relative to it: "amount.wasm"); for the
// plugins' manifest, the plugin's module itself.
func Module(manifest, ref string) ([]byte, error) {
	if path.Dir(manifest) == "plugins" {
		b, err := pluginModules.ReadFile(path.Join("plugins", ref))
		if err != nil {
			return nil, fmt.Errorf("examples: no plugin module %s for %s (run examples/plugins/build.sh): %w", ref, manifest, err)
		}
		return b, nil
	}
	name := path.Join("prebuilt", path.Dir(manifest), ref) + ".gz"
	gz, err := prebuilt.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("examples: no prebuilt module %s for %s (run go tool task examples): %w", ref, manifest, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("examples: %s: %w", name, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("examples: %s: %w", name, err)
	}
	return b, nil
}
