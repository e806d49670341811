package engine

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ErrInvalidDataSource: a data source descriptor is inconsistent. Errors wrapping it also
// wrap a *FieldError naming the manifest field at fault.
var ErrInvalidDataSource = errors.New("invalid data source")

// DataSource describes where rows come from: a stream, a REST endpoint, a webhook, …. It is
// the engine's form of a DataSource manifest. Features name it by FQN in Feature.DataSource;
// the builder registered under Kind (a plugin) knows how to read Config.
type DataSource struct {
	// FQN is the fully qualified name, "namespace.name".
	FQN string
	// Kind names the plugin that reads the source (e.g. "streaming", "rest"). It is free-form
	// here; the plugin registry checks that it exists.
	Kind string
	// Config is kind-specific configuration.
	Config map[string]string
	// KeyFields names the fields of a row that carry entity keys.
	KeyFields []string
	// TimestampField names the field of a row that carries its timestamp, or "".
	TimestampField string
	// Schema describes the rows: a string (a reference or an inline schema) as written in the
	// manifest, or an inline mapping encoded as JSON. "" when the manifest gives none.
	Schema string
	// Labels are free-form metadata.
	Labels map[string]string
}

// Validate checks that ds is consistent. Errors name the manifest field path (they wrap a
// *FieldError) and wrap ErrInvalidDataSource.
func (ds *DataSource) Validate() error {
	bad := func(path, format string, args ...any) error {
		return fmt.Errorf("%w %s: %w", ErrInvalidDataSource, ds.FQN, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if _, err := ParseFQN(ds.FQN, ""); err != nil {
		return bad("metadata.name", "%v", err)
	}
	if strings.TrimSpace(ds.Kind) == "" {
		return bad("spec.kind", "missing (the kind of source, e.g. streaming or rest)")
	}
	for _, k := range slices.Sorted(maps.Keys(ds.Config)) {
		if strings.TrimSpace(k) == "" {
			return bad("spec.config", "an entry has an empty name")
		}
	}
	for i, k := range ds.KeyFields {
		if strings.TrimSpace(k) == "" {
			return bad(fmt.Sprintf("spec.keyFields[%d]", i), "empty field name")
		}
		if j := slices.Index(ds.KeyFields, k); j != i {
			return bad(fmt.Sprintf("spec.keyFields[%d]", i), "duplicate key field %q (also spec.keyFields[%d])", k, j)
		}
	}
	return nil
}

// Clone returns a deep copy of ds.
func (ds *DataSource) Clone() *DataSource {
	c := *ds
	c.Config = cloneMap(ds.Config)
	c.KeyFields = slices.Clone(ds.KeyFields)
	c.Labels = cloneMap(ds.Labels)
	return &c
}
