package egress

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
)

// Config is what a Factory gets: the egress's name, its manifest's spec.config and the
// operator's policy.
//
// The getters read spec.config's values as manifest.Egress.Config holds them (a string, a
// []string or a map[string]string). Like plugins.Config's, they trim spaces and treat a
// missing key and one set to "" alike (both give the default). Their errors wrap
// plugins.ErrInvalidConfig and name the key by its manifest path (spec.config.timeout: …);
// they never quote a string value they did not parse as something else, so that a secret
// does not end up in an error message.
type Config struct {
	// FQN is the egress's name, namespace.name.
	FQN string
	// Values is spec.config. Factories read it through the getters.
	Values map[string]any
	// Policy is the operator's ceiling on every egress (hosts it may connect to).
	Policy Policy
}

// Path returns the manifest path of a config key: spec.config.url, spec.config["a b"].
func Path(key string) string {
	simple := key != ""
	for i := 0; i < len(key) && simple; i++ {
		c := key[i]
		simple = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if !simple {
		return "spec.config[" + strconv.Quote(key) + "]"
	}
	return "spec.config." + key
}

func (c Config) invalid(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", plugins.ErrInvalidConfig, Path(key), fmt.Sprintf(format, args...))
}

// Check returns an error naming every key of spec.config that is not in known (with the
// nearest known key as a suggestion), so that a typo fails the apply instead of being
// ignored.
func (c Config) Check(known ...string) error {
	var msgs []string
	for _, k := range slices.Sorted(maps.Keys(c.Values)) {
		if slices.Contains(known, k) {
			continue
		}
		msgs = append(msgs, Path(k)+": unknown key"+engine.DidYouMean(k, known))
	}
	if len(msgs) == 0 {
		return nil
	}
	want := "none"
	if len(known) > 0 {
		want = strings.Join(known, ", ")
	}
	return fmt.Errorf("%w: %s (known: %s)", plugins.ErrInvalidConfig, strings.Join(msgs, "; "), want)
}

// Has reports whether key is set to a non-empty value (a string that is not blank, or a
// list or mapping with an element).
func (c Config) Has(key string) bool {
	switch v := c.Values[key].(type) {
	case string:
		return strings.TrimSpace(v) != ""
	case []string:
		return len(v) > 0
	case map[string]string:
		return len(v) > 0
	}
	return false
}

// str returns the trimmed string of key and whether it is set to something non-empty; a
// list or a mapping is an error.
func (c Config) str(key string) (string, bool, error) {
	v, ok := c.Values[key]
	if !ok {
		return "", false, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", false, c.invalid(key, "%s: want a single value", describeValue(v))
	}
	s = strings.TrimSpace(s)
	return s, s != "", nil
}

func describeValue(v any) string {
	switch v.(type) {
	case []string:
		return "a list"
	case map[string]string:
		return "a mapping"
	}
	return fmt.Sprintf("a %T", v)
}

// String returns the value of key, trimmed, or def when it is missing or empty.
func (c Config) String(key, def string) (string, error) {
	s, ok, err := c.str(key)
	if err != nil || !ok {
		return def, err
	}
	return s, nil
}

// Duration parses the value of key as a Go duration (500ms, 5s, 1m), or returns def. A
// duration that is written must be positive.
func (c Config) Duration(key string, def time.Duration) (time.Duration, error) {
	s, ok, err := c.str(key)
	if err != nil || !ok {
		return def, err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return def, c.invalid(key, "%q is not a duration (want a Go duration such as 500ms, 5s or 1m)", s)
	}
	if d <= 0 {
		return def, c.invalid(key, "%q: must be a positive duration (omit it for the default)", s)
	}
	return d, nil
}

// Int parses the value of key as a decimal integer ('_' separators allowed), or returns
// def.
func (c Config) Int(key string, def int64) (int64, error) {
	s, ok, err := c.str(key)
	if err != nil || !ok {
		return def, err
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, 64)
	if err != nil {
		return def, c.invalid(key, "%q is not an integer", s)
	}
	return n, nil
}

// Bool parses the value of key as a boolean (true, false, yes, no, 1, 0, any case), or
// returns def.
func (c Config) Bool(key string, def bool) (bool, error) {
	s, ok, err := c.str(key)
	if err != nil || !ok {
		return def, err
	}
	switch strings.ToLower(s) {
	case "1", "t", "true", "yes", "y", "on":
		return true, nil
	case "0", "f", "false", "no", "n", "off":
		return false, nil
	}
	return def, c.invalid(key, "%q is not true or false", s)
}

// Strings returns the value of key as a list: a list's elements, or a string split on ',',
// ';' and white space; blank elements are dropped, the others trimmed. A missing key is
// nil; a mapping is an error.
func (c Config) Strings(key string) ([]string, error) {
	var parts []string
	switch v := c.Values[key].(type) {
	case nil:
		return nil, nil
	case string:
		parts = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' })
	case []string:
		parts = v
	default:
		return nil, c.invalid(key, "%s: want a list (or a string of values separated by ',')", describeValue(v))
	}
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// Map returns the value of key as a mapping of names to strings (a copy, values as
// written). A missing key is nil; a string or a list is an error.
func (c Config) Map(key string) (map[string]string, error) {
	switch v := c.Values[key].(type) {
	case nil:
		return nil, nil
	case map[string]string:
		return maps.Clone(v), nil
	default:
		return nil, c.invalid(key, "%s: want a mapping of names to strings", describeValue(v))
	}
}
