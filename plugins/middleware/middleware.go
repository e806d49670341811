// Package middleware holds Osprey's native middlewares. Each registers itself with the
// plugins registry at init, so importing the package (blank) makes them available to
// features by name:
//
//   - clip: clamps numeric values into [min, max].
//   - validate: rejects values outside [min, max], lengths outside [min_len, max_len] and
//     strings not matching pattern, with an error wrapping engine.ErrRejected.
//
// Both run at preSet (on the value about to be written) and postGet (on the value read);
// they refuse other stages and configurations that cannot apply to the feature when the
// feature is applied, naming the offending key or stage. At preSet an Incr carries an
// increment rather than a value, so they let it through unchanged, except for windowed
// features, where every write is an update of the window. A windowed feature's value read
// at postGet is a set of aggregates, so on windowed features they only run at preSet.
//
// The middlewares never modify a Value in place (Values are immutable) and are safe for
// concurrent use.
package middleware

import (
	"fmt"
	"math"
	"slices"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
)

// checkStages refuses stages other than preSet and postGet, and postGet on a windowed
// feature.
func checkStages(f *engine.Feature, ref engine.MiddlewareRef) error {
	if len(ref.Stages) == 0 {
		return fmt.Errorf("no stage given (want preSet, postGet or both)")
	}
	for _, st := range ref.Stages {
		switch {
		case st != engine.StagePreSet && st != engine.StagePostGet:
			return fmt.Errorf("stage %s is not supported (want preSet, postGet or both)", st)
		case st == engine.StagePostGet && f.Windowed():
			return fmt.Errorf("stage postGet does nothing on the windowed feature %s (its value read is a set of aggregates): use preSet to act on its updates", f.FQN)
		}
	}
	return nil
}

// passes reports whether the middleware lets v through untouched: nulls, window results,
// and Incr increments of unwindowed features at preSet.
func passes(f *engine.Feature, call *engine.Call, v engine.Value) bool {
	switch v.Kind() {
	case engine.KindNull, engine.KindWindow:
		return true
	}
	return call.Op == engine.OpIncr && call.Stage == engine.StagePreSet && !f.Windowed()
}

// bounds is a closed numeric interval, also as the integers it holds.
type bounds struct {
	lo, hi   float64
	ilo, ihi int64
	set      bool // min or max was configured
}

// parseBounds reads the min and max keys. It fails when min > max, and, for an int
// feature, when no integer lies between them.
func parseBounds(cfg plugins.Config, f *engine.Feature) (bounds, error) {
	b := bounds{set: cfg.Has("min") || cfg.Has("max")}
	var err error
	if b.lo, err = cfg.Float("min", math.Inf(-1)); err != nil {
		return b, err
	}
	if b.hi, err = cfg.Float("max", math.Inf(1)); err != nil {
		return b, err
	}
	if b.lo > b.hi {
		return b, fmt.Errorf("%w: min %v is greater than max %v", plugins.ErrInvalidConfig, b.lo, b.hi)
	}
	b.ilo, b.ihi = toInt(math.Ceil(b.lo)), toInt(math.Floor(b.hi))
	if f.Primitive.Elem() == engine.PrimitiveInt && b.ilo > b.ihi {
		return b, fmt.Errorf("%w: no integer lies in [%v, %v] for the int feature %s", plugins.ErrInvalidConfig, b.lo, b.hi, f.FQN)
	}
	return b, nil
}

// toInt converts an integral float to int64, saturating at the int64 range.
func toInt(x float64) int64 {
	switch {
	case x <= math.MinInt64:
		return math.MinInt64
	case x >= math.MaxInt64: // float64(MaxInt64) is 2⁶³
		return math.MaxInt64
	}
	return int64(x)
}

// mapList returns l with fn applied to each element, sharing l when fn changes none.
func mapList[T comparable](l []T, fn func(T) T) ([]T, bool) {
	for i, x := range l {
		if y := fn(x); y != x {
			out := slices.Clone(l)
			out[i] = y
			for j := i + 1; j < len(out); j++ {
				out[j] = fn(out[j])
			}
			return out, true
		}
	}
	return l, false
}
