package host

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/osprey-ml/osprey/engine"
)

// AddManifestModules reads the Wasm modules that manifests name by path — a feature's
// spec.builder.module and its middlewares' module, relative to the manifest's own file —
// adds them with AddModule, and rewrites each reference to the module's digest, so that
// the features can be applied. References that are already digests ("sha256:…") are left
// as they are. Errors name the manifest and the field.
func (h *Host) AddManifestModules(ms []engine.Manifest) error {
	for i := range ms {
		f := ms[i].Feature
		if f == nil {
			continue
		}
		dir := filepath.Dir(ms[i].Pos.Source)
		if f.Builder.Module != "" {
			ref, err := h.addModuleFile(dir, f.Builder.Module)
			if err != nil {
				return fmt.Errorf("%s: spec.builder.module: %w", ms[i].Pos, err)
			}
			f.Builder.Module = ref
		}
		for j := range f.Middlewares {
			if f.Middlewares[j].Module == "" {
				continue
			}
			ref, err := h.addModuleFile(dir, f.Middlewares[j].Module)
			if err != nil {
				return fmt.Errorf("%s: spec.middlewares[%d].module: %w", ms[i].Pos, j, err)
			}
			f.Middlewares[j].Module = ref
		}
	}
	return nil
}

func (h *Host) addModuleFile(dir, ref string) (string, error) {
	if strings.HasPrefix(ref, "sha256:") {
		return ref, nil
	}
	path := ref
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, ref)
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %v (build the module first)", ErrModuleNotFound, err)
	}
	if st.Size() > int64(h.cfg.maxModuleSize) {
		return "", fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", ErrModule, path, st.Size(), h.cfg.maxModuleSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrModuleNotFound, err)
	}
	return h.AddModule(b)
}
