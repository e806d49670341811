package osprey

import (
	"math"
	"strconv"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
)

// Config is the configuration of the object an instance serves (ABI.md §4.4, ABI 1.1): the
// manifest's spec.builder.config for a feature program, a middleware's config for a
// middleware, as strings, without the keys the host consumes itself (memoryLimit).
//
// The host delivers it before the instance's first call, and again when the instance moves
// to an object with a different configuration — never during a call. A Config is immutable;
// its strings are allocated once, when it is delivered.
type Config struct{ kv []abi.KV } // sorted by name, names unique

// Lookup returns the value of key and whether the configuration has it. It does not
// allocate.
func (c Config) Lookup(key string) (string, bool) {
	lo, hi := 0, len(c.kv)
	for lo < hi { // the first name >= key
		mid := int(uint(lo+hi) >> 1)
		if c.kv[mid].Name < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(c.kv) && c.kv[lo].Name == key {
		return c.kv[lo].Value, true
	}
	return "", false
}

// Int returns key's value as a decimal int64, or def when the configuration does not have
// key. A value that is not an integer is an error naming key. It allocates only for the
// error.
func (c Config) Int(key string, def int64) (int64, error) {
	s, ok := c.Lookup(key)
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return def, configError(key, s, "an integer")
	}
	return n, nil
}

// Float returns key's value as a float64 (decimal or exponent form), or def when the
// configuration does not have key. A value that is not a finite number is an error naming
// key. It allocates only for the error.
func (c Config) Float(key string, def float64) (float64, error) {
	s, ok := c.Lookup(key)
	if !ok {
		return def, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return def, configError(key, s, "a finite number")
	}
	return f, nil
}

// Len returns the number of keys.
func (c Config) Len() int { return len(c.kv) }

// Keys returns the configuration's keys in increasing byte order, in a new slice.
func (c Config) Keys() []string {
	keys := make([]string, len(c.kv))
	for i, kv := range c.kv {
		keys[i] = kv.Name
	}
	return keys
}

// ConfigError is a configuration value that does not parse as asked.
type ConfigError struct {
	Key, Value, Want string
}

// Error returns `config <key>: "<value>" is not <want>`.
func (e *ConfigError) Error() string {
	return "config " + e.Key + ": " + strconv.Quote(e.Value) + " is not " + e.Want
}

func configError(key, value, want string) error {
	return &ConfigError{Key: key, Value: value, Want: want}
}

var (
	current   Config
	onConfig  func(Config) error
	configOut []byte
)

// Config returns the value of key in the configuration of the object this call serves (see
// Config) and whether it has it. Repeated calls do not allocate.
func (c *Context) Config(key string) (string, bool) { return current.Lookup(key) }

// ConfigInt is Config's value as an int64 (Config.Int): def when absent, an error when it is
// not an integer.
func (c *Context) ConfigInt(key string, def int64) (int64, error) { return current.Int(key, def) }

// ConfigFloat is Config's value as a float64 (Config.Float): def when absent, an error when
// it is not a finite number.
func (c *Context) ConfigFloat(key string, def float64) (float64, error) {
	return current.Float(key, def)
}

// CurrentConfig returns the configuration delivered last (empty before any, and on a host
// that does not deliver one).
func CurrentConfig() Config { return current }

// OnConfig registers fn to check and digest each configuration the host delivers, before
// it becomes current: parse numbers once into package variables, say, rather than on every
// call. An error (or a panic) refuses the configuration: the host reports it when the
// feature is applied, naming the feature, and the object is not applied. Call OnConfig from
// an init function; a later call replaces fn. fn must not call the host (Context methods
// that reach it, Log): no call is in progress.
func OnConfig(fn func(Config) error) { onConfig = fn }

// Configure serves one osprey_configure call (ABI.md §4.4): it decodes input, runs the
// OnConfig hook and, if the hook accepts, makes the configuration current. It returns the
// encoded response (status 0 with no body, or an error), valid until the next call of
// Configure. The osprey_configure export calls it; tests can call it directly.
func Configure(input []byte) []byte {
	c, err := abi.DecodeConfigureCall(input)
	if err != nil {
		return respond(abi.AppendErrorResponse(configOut[:0], abi.StatusError, "malformed configure call: "+err.Error()))
	}
	cfg := Config{kv: c.Config}
	if msg := runHook(cfg); msg != "" {
		return respond(abi.AppendErrorResponse(configOut[:0], abi.StatusError, msg))
	}
	current = cfg
	return respond(append(configOut[:0], abi.StatusOK))
}

func respond(b []byte) []byte {
	configOut = b
	return b
}

// runHook runs the OnConfig hook, turning an error or a panic into a message.
func runHook(cfg Config) (msg string) {
	if onConfig == nil {
		return ""
	}
	defer func() {
		if r := recover(); r != nil {
			msg = "panic: " + core.FormatAny(r) + core.Frames(5)
		}
	}()
	if err := onConfig(cfg); err != nil {
		return err.Error()
	}
	return ""
}
