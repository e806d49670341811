//go:build wasip1

// Command abivalidate is an Osprey ABI middleware doing the work of the example validate
// Extism plugin's handle (examples/plugins/validate/assembly/index.ts), for the benchmark
// that compares the two (host/extism/abi_bench_test.go):
//
//   - the limit is the middleware's config "max" (no max, no limit);
//   - a number above it fails the call with an error naming the value and the limit
//     ("validate: payments.amount: value 25000 exceeds max 10000");
//   - a negative number becomes 0;
//   - anything else comes back unchanged.
//
// Unlike the plugin, which fails each call when max is not a number, it refuses such a
// config once, when the feature is applied (the ABI's osprey_configure).
package main

import (
	"math"
	"strconv"
	"strings"

	"github.com/osprey-ml/osprey/guest-sdk/go/middleware"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
)

// The limit, set by OnConfig before the instance's first call.
var (
	hasMax  bool
	maxNum  float64
	maxText string // as configured (trimmed), for the error message
)

func init() {
	osprey.OnConfig(func(cfg osprey.Config) error {
		s, ok := cfg.Lookup("max")
		if !ok {
			hasMax, maxNum, maxText = false, 0, ""
			return nil
		}
		s = strings.TrimSpace(s)
		m, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(m, 0) || math.IsNaN(m) {
			return &osprey.ConfigError{Key: "max", Value: s, Want: "a number"}
		}
		hasMax, maxNum, maxText = true, m, s
		return nil
	})
	middleware.Handle(validate)
}

func validate(ctx *osprey.Context, _ middleware.Call, v osprey.Value) (osprey.Value, error) {
	var num float64
	switch v.Tag {
	case osprey.TagFloat:
		num = v.F
	case osprey.TagInt:
		num = float64(v.I)
	default:
		return v, nil // not a number: unchanged
	}
	if hasMax && num > maxNum {
		return v, &limitError{feature: ctx.FQN(), value: v}
	}
	if num < 0 {
		if v.Tag == osprey.TagInt {
			return osprey.Int(0), nil
		}
		return osprey.Float(0), nil
	}
	return v, nil
}

// limitError is a value above max; its message is built only when asked for.
type limitError struct {
	feature string
	value   osprey.Value
}

func (e *limitError) Error() string {
	return "validate: " + e.feature + ": value " + numberText(e.value) + " exceeds max " + maxText
}

// numberText formats v as encoding/json does (the text the plugin's input carries).
func numberText(v osprey.Value) string {
	if v.Tag == osprey.TagInt {
		return strconv.FormatInt(v.I, 10)
	}
	f := v.F
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		// clean up e-09 to e-9, as encoding/json does
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
		return s
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func main() {}
