// Package examples embeds the example manifests so that `osprey dev` can apply them on a
// machine that has only the binary.
package examples

import "embed"

// Manifests holds every examples/*/*.yaml file.
//
//go:embed */*.yaml
var Manifests embed.FS
