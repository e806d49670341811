package middleware

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"unicode/utf8"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
)

func init() {
	plugins.RegisterMiddleware("validate", newValidate)
}

// newValidate builds the validate middleware. It stops the operation with an error
// wrapping engine.ErrRejected when the value breaks one of the configured rules (at least
// one is required; every bound is inclusive):
//
//   - min, max: numbers (int and float features, each element of []int and []float);
//     NaN is always out of range.
//   - min_len, max_len: the length of a string in characters (runes), or of a list in
//     elements.
//   - pattern: an RE2 regular expression that strings (each element of a []string) must
//     match; anchor it with ^ and $ to match the whole string.
//
// A rule that cannot apply to the feature's type is refused when the feature is applied.
//
//	middlewares:
//	  - name: validate
//	    stages: [preSet]
//	    config: {min: "0", max: "1e6"}
func newValidate(_ context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
	if err := checkStages(f, ref); err != nil {
		return nil, err
	}
	cfg := plugins.Config(ref.Config)
	if err := cfg.Check("min", "max", "min_len", "max_len", "pattern"); err != nil {
		return nil, err
	}
	v := &validator{f: f}
	elem := f.Primitive.Elem()
	var err error
	if v.b, err = parseBounds(cfg, f); err != nil {
		return nil, err
	}
	if v.b.set && !elem.IsNumeric() {
		return nil, fmt.Errorf("%w: min and max need an int or float feature (or a list of them), not %s", plugins.ErrInvalidConfig, f.Primitive)
	}
	v.lenSet = cfg.Has("min_len") || cfg.Has("max_len")
	if v.minLen, err = cfg.Int("min_len", 0); err != nil {
		return nil, err
	}
	if v.maxLen, err = cfg.Int("max_len", math.MaxInt); err != nil {
		return nil, err
	}
	switch {
	case v.lenSet && f.Primitive != engine.PrimitiveString && !f.Primitive.IsList():
		return nil, fmt.Errorf("%w: min_len and max_len need a string or list feature, not %s", plugins.ErrInvalidConfig, f.Primitive)
	case v.minLen < 0 || v.maxLen < 0:
		return nil, fmt.Errorf("%w: min_len and max_len must not be negative", plugins.ErrInvalidConfig)
	case v.minLen > v.maxLen:
		return nil, fmt.Errorf("%w: min_len %d is greater than max_len %d", plugins.ErrInvalidConfig, v.minLen, v.maxLen)
	}
	if p := cfg.String("pattern", ""); p != "" {
		if elem != engine.PrimitiveString {
			return nil, fmt.Errorf("%w: pattern needs a string or []string feature, not %s", plugins.ErrInvalidConfig, f.Primitive)
		}
		if v.pattern, err = regexp.Compile(p); err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", plugins.ErrInvalidConfig, "pattern", err)
		}
	}
	if !v.b.set && !v.lenSet && v.pattern == nil {
		return nil, fmt.Errorf("%w: set at least one of min, max, min_len, max_len, pattern", plugins.ErrInvalidConfig)
	}
	return v.apply, nil
}

type validator struct {
	f              *engine.Feature
	b              bounds
	lenSet         bool
	minLen, maxLen int
	pattern        *regexp.Regexp
}

func (v *validator) apply(_ context.Context, call *engine.Call, val engine.Value) (engine.Value, error) {
	if passes(v.f, call, val) {
		return val, nil
	}
	var err error
	switch val.Kind() {
	case engine.KindInt:
		err = v.int(val.Int())
	case engine.KindFloat:
		err = v.float(val.Float())
	case engine.KindString:
		if err = v.length(utf8.RuneCountInString(val.Str()), "characters"); err == nil {
			err = v.match(val.Str())
		}
	case engine.KindIntList:
		l := val.Ints()
		err = v.list(len(l), func(i int) error { return v.int(l[i]) })
	case engine.KindFloatList:
		l := val.Floats()
		err = v.list(len(l), func(i int) error { return v.float(l[i]) })
	case engine.KindStringList:
		l := val.Strs()
		err = v.list(len(l), func(i int) error { return v.match(l[i]) })
	default:
		err = v.length(val.Len(), "elements") // []bool, []timestamp; scalars have no rule
	}
	if err != nil {
		return engine.Null, err
	}
	return val, nil
}

func (v *validator) int(x int64) error {
	if v.b.set && (x < v.b.ilo || x > v.b.ihi) {
		return v.outOfRange(float64(x))
	}
	return nil
}

func (v *validator) float(x float64) error {
	if v.b.set && !(x >= v.b.lo && x <= v.b.hi) { // NaN fails both
		return v.outOfRange(x)
	}
	return nil
}

func (v *validator) outOfRange(x float64) error {
	switch {
	case x < v.b.lo:
		return fmt.Errorf("%w: %v is below the minimum %v", engine.ErrRejected, x, v.b.lo)
	case x > v.b.hi:
		return fmt.Errorf("%w: %v is above the maximum %v", engine.ErrRejected, x, v.b.hi)
	}
	return fmt.Errorf("%w: %v is not in [%v, %v]", engine.ErrRejected, x, v.b.lo, v.b.hi)
}

func (v *validator) length(n int, unit string) error {
	switch {
	case !v.lenSet:
		return nil
	case n < v.minLen:
		return fmt.Errorf("%w: %d %s, fewer than min_len %d", engine.ErrRejected, n, unit, v.minLen)
	case n > v.maxLen:
		return fmt.Errorf("%w: %d %s, more than max_len %d", engine.ErrRejected, n, unit, v.maxLen)
	}
	return nil
}

func (v *validator) match(s string) error {
	if v.pattern != nil && !v.pattern.MatchString(s) {
		return fmt.Errorf("%w: %s does not match the pattern %s", engine.ErrRejected, quote(s), v.pattern)
	}
	return nil
}

// list checks a list's length n, then each of its elements with elem.
func (v *validator) list(n int, elem func(i int) error) error {
	if err := v.length(n, "elements"); err != nil {
		return err
	}
	for i := range n {
		if err := elem(i); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
	}
	return nil
}

// quote quotes s for an error message, shortened to its first 64 characters.
func quote(s string) string {
	const maxRunes = 64
	if utf8.RuneCountInString(s) <= maxRunes {
		return strconv.Quote(s)
	}
	n := 0
	for i := range s {
		if n == maxRunes {
			return strconv.Quote(s[:i]) + "…"
		}
		n++
	}
	return strconv.Quote(s)
}
