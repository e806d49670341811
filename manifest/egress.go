package manifest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	"github.com/osprey-ml/osprey/engine"
)

// ErrInvalidEgress is wrapped by the errors of Egress.Validate, together with a
// *engine.FieldError naming the manifest field at fault.
var ErrInvalidEgress = errors.New("invalid egress")

// maxEgressType bounds the length of an egress's spec.type.
const maxEgressType = 64

// Egress is a destination outside Osprey — a webhook, a stream — that feature programs emit
// messages to (engine.Invocation.Emit) by the egress's FQN. Its manifest is an Egress
// manifest (see the package documentation). What its configuration means is for its type
// (registered by name, package plugins/egress) to check when it is applied, not for the
// manifest.
type Egress struct {
	// FQN is namespace.name, lower-cased, as a feature's.
	FQN string
	// Labels are the manifest's metadata.labels.
	Labels map[string]string
	// Type is the egress type, spec.type: the name it is registered under ("webhook",
	// "redis-stream").
	Type string
	// Config is spec.config, the type's configuration. Each value is a string (a YAML
	// scalar, as written: 5s, 1000 and true are the strings "5s", "1000" and "true"), a
	// []string (a list of scalars) or a map[string]string (a mapping of names to scalars);
	// Validate refuses anything else.
	Config map[string]any
}

// Clone returns a deep copy of e.
func (e *Egress) Clone() *Egress {
	c := *e
	c.Labels = maps.Clone(e.Labels)
	if e.Config != nil {
		c.Config = make(map[string]any, len(e.Config))
		for k, v := range e.Config {
			switch v := v.(type) {
			case []string:
				c.Config[k] = slices.Clone(v)
			case map[string]string:
				c.Config[k] = maps.Clone(v)
			default:
				c.Config[k] = v
			}
		}
	}
	return &c
}

// Validate checks that e is consistent. It returns the first problem found, as an error
// wrapping ErrInvalidEgress and a *engine.FieldError whose Path is the manifest field at
// fault (spec.type, spec.config.headers, …).
func (e *Egress) Validate() error {
	bad := func(path, format string, args ...any) error {
		return fmt.Errorf("%w %s: %w", ErrInvalidEgress, e.FQN, &engine.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if _, err := engine.ParseFQN(e.FQN, ""); err != nil {
		return bad("metadata.name", "%v", err)
	}
	if msg := checkEgressType(e.Type); msg != "" {
		return bad("spec.type", "%s", msg)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Config)) {
		path := joinPath("spec.config", k)
		if k == "" {
			return bad(path, "empty name")
		}
		switch v := e.Config[k].(type) {
		case string, []string:
		case map[string]string:
			if _, ok := v[""]; ok {
				return bad(joinPath(path, ""), "empty name")
			}
		default:
			return bad(path, "a %T: want a string, a list of strings or a mapping of names to strings", v)
		}
	}
	return nil
}

// checkEgressType returns what is wrong with an egress type, or "".
func checkEgressType(t string) string {
	switch {
	case t == "":
		return "missing (the egress type, e.g. webhook or redis-stream)"
	case len(t) > maxEgressType:
		return fmt.Sprintf("%d characters, more than %d", len(t), maxEgressType)
	}
	if i := strings.IndexFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return fmt.Sprintf("%q has white space or a control character at offset %d", t, i)
	}
	return ""
}
