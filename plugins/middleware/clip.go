package middleware

import (
	"context"
	"fmt"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
)

func init() {
	plugins.RegisterMiddleware("clip", newClip)
}

// newClip builds the clip middleware: it clamps int and float values, and each element of
// []int and []float values, into [min, max] (config keys min and max, at least one; both
// inclusive). On an int feature the bounds are rounded inwards to integers. NaN passes
// through unchanged.
//
//	middlewares:
//	  - name: clip
//	    stages: [preSet]
//	    config: {min: "0", max: "1000"}
func newClip(_ context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
	if !f.Primitive.Elem().IsNumeric() {
		return nil, fmt.Errorf("clip needs an int or float feature (or a list of them), not %s", f.Primitive)
	}
	if err := checkStages(f, ref); err != nil {
		return nil, err
	}
	cfg := plugins.Config(ref.Config)
	if err := cfg.Check("min", "max"); err != nil {
		return nil, err
	}
	b, err := parseBounds(cfg, f)
	if err != nil {
		return nil, err
	}
	if !b.set {
		return nil, fmt.Errorf("%w: set min, max or both", plugins.ErrInvalidConfig)
	}
	c := &clipper{f: f, b: b}
	return c.apply, nil
}

type clipper struct {
	f *engine.Feature
	b bounds
}

func (c *clipper) apply(_ context.Context, call *engine.Call, v engine.Value) (engine.Value, error) {
	if passes(c.f, call, v) {
		return v, nil
	}
	switch v.Kind() {
	case engine.KindInt:
		if x := v.Int(); x < c.b.ilo || x > c.b.ihi {
			return engine.Int(c.clampInt(x)), nil
		}
	case engine.KindFloat:
		if x := v.Float(); x < c.b.lo || x > c.b.hi {
			return engine.Float(c.clampFloat(x)), nil
		}
	case engine.KindIntList:
		if l, changed := mapList(v.Ints(), c.clampInt); changed {
			return engine.IntList(l), nil
		}
	case engine.KindFloatList:
		if l, changed := mapList(v.Floats(), c.clampFloat); changed {
			return engine.FloatList(l), nil
		}
	default:
		return engine.Null, fmt.Errorf("%w: clip got a %s value, want a number", engine.ErrTypeMismatch, v.Kind())
	}
	return v, nil
}

func (c *clipper) clampInt(x int64) int64 { return min(max(x, c.b.ilo), c.b.ihi) }

func (c *clipper) clampFloat(x float64) float64 {
	if x != x { // NaN: min and max would propagate it anyway; say so explicitly
		return x
	}
	return min(max(x, c.b.lo), c.b.hi)
}
