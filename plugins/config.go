package plugins

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by every error reporting a bad Config entry.
var ErrInvalidConfig = errors.New("invalid plugin config")

// Config is the string-keyed configuration handed to a plugin factory, typically one
// section of the server's configuration file or a middleware's config in a manifest.
//
// The typed getters treat a missing key and a key set to "" (after trimming spaces) alike:
// both yield the default. Parse errors wrap ErrInvalidConfig and name the key and the
// offending value. A nil Config is valid and empty. A Config is safe for concurrent reads.
type Config map[string]string

// lookup returns the trimmed value of key and whether it is set to something non-empty.
func (c Config) lookup(key string) (string, bool) {
	v, ok := c[key]
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

// Has reports whether key is set to a non-empty value.
func (c Config) Has(key string) bool {
	_, ok := c.lookup(key)
	return ok
}

// String returns the value of key, or def when it is missing or empty.
func (c Config) String(key, def string) string {
	if v, ok := c.lookup(key); ok {
		return v
	}
	return def
}

// Duration parses the value of key as a Go duration ("250ms", "1m30s"), or returns def.
func (c Config) Duration(key string, def time.Duration) (time.Duration, error) {
	v, ok := c.lookup(key)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return def, configError(key, v, "a duration such as 30s or 5m")
	}
	return d, nil
}

// Int parses the value of key as a decimal integer, or returns def.
func (c Config) Int(key string, def int) (int, error) {
	v, ok := c.lookup(key)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def, configError(key, v, "an integer")
	}
	return n, nil
}

// Float parses the value of key as a float64, or returns def. NaN is refused.
func (c Config) Float(key string, def float64) (float64, error) {
	v, ok := c.lookup(key)
	if !ok {
		return def, nil
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil || x != x {
		return def, configError(key, v, "a number")
	}
	return x, nil
}

// Bool parses the value of key as a boolean (1, t, true, 0, f, false, any case), or
// returns def.
func (c Config) Bool(key string, def bool) (bool, error) {
	v, ok := c.lookup(key)
	if !ok {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return def, configError(key, v, "true or false")
	}
	return b, nil
}

// Check returns an error naming every key of c that is not in known, so that a typo in a
// configuration fails loudly instead of being ignored.
func (c Config) Check(known ...string) error {
	var unknown []string
	for k := range c {
		if !slices.Contains(known, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	want := "none"
	if len(known) > 0 {
		want = strings.Join(known, ", ")
	}
	noun := "key"
	if len(unknown) > 1 {
		noun = "keys"
	}
	return fmt.Errorf("%w: unknown %s %s (known: %s)", ErrInvalidConfig, noun, strings.Join(unknown, ", "), want)
}

func configError(key, value, want string) error {
	return fmt.Errorf("%w: key %q: %q is not %s", ErrInvalidConfig, key, value, want)
}
