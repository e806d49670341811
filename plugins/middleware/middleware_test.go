package middleware_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
	_ "github.com/osprey-ml/osprey/plugins/middleware"
)

var ctx = context.Background()

func feature(p engine.Primitive) *engine.Feature {
	return &engine.Feature{FQN: "t.f", Primitive: p, Freshness: time.Minute, Staleness: time.Hour,
		Timeout: time.Second, Keys: []string{"id"}, Builder: engine.Builder{Kind: engine.BuilderSourceless}}
}

func windowed(p engine.Primitive) *engine.Feature {
	f := feature(p)
	f.Aggrs, f.Granularity = engine.AllAggrs, time.Minute
	return f
}

var (
	preSet  = []engine.Stage{engine.StagePreSet}
	postGet = []engine.Stage{engine.StagePostGet}
	both    = []engine.Stage{engine.StagePreSet, engine.StagePostGet}
)

func resolve(t *testing.T, name string, f *engine.Feature, stages []engine.Stage, cfg map[string]string) engine.Middleware {
	t.Helper()
	mw, err := plugins.Middlewares.ResolveMiddleware(ctx, f, engine.MiddlewareRef{Name: name, Stages: stages, Config: cfg})
	if err != nil {
		t.Fatalf("resolve %s %v: %v", name, cfg, err)
	}
	return mw
}

func TestRegistered(t *testing.T) {
	names := plugins.MiddlewareNames()
	for _, want := range []string{"clip", "validate"} {
		if !slices.Contains(names, want) {
			t.Errorf("%q not registered (have %v)", want, names)
		}
	}
}

func TestClip(t *testing.T) {
	tests := []struct {
		name string
		f    *engine.Feature
		cfg  map[string]string
		op   engine.Op
		in   engine.Value
		want engine.Value
	}{
		{"int inside", feature(engine.PrimitiveInt), map[string]string{"min": "0", "max": "10"}, engine.OpSet, engine.Int(5), engine.Int(5)},
		{"int below", feature(engine.PrimitiveInt), map[string]string{"min": "0", "max": "10"}, engine.OpSet, engine.Int(-5), engine.Int(0)},
		{"int above", feature(engine.PrimitiveInt), map[string]string{"min": "0", "max": "10"}, engine.OpSet, engine.Int(11), engine.Int(10)},
		{"int bounds rounded inwards", feature(engine.PrimitiveInt), map[string]string{"min": "0.5", "max": "9.5"}, engine.OpSet, engine.Int(0), engine.Int(1)},
		{"int min only", feature(engine.PrimitiveInt), map[string]string{"min": "-3"}, engine.OpSet, engine.Int(math.MinInt64), engine.Int(-3)},
		{"int max only", feature(engine.PrimitiveInt), map[string]string{"max": "1e300"}, engine.OpSet, engine.Int(math.MaxInt64), engine.Int(math.MaxInt64)},
		{"float below", feature(engine.PrimitiveFloat), map[string]string{"min": "-1.5", "max": "1.5"}, engine.OpSet, engine.Float(-2), engine.Float(-1.5)},
		{"float above", feature(engine.PrimitiveFloat), map[string]string{"min": "-1.5", "max": "1.5"}, engine.OpSet, engine.Float(2), engine.Float(1.5)},
		{"float inside", feature(engine.PrimitiveFloat), map[string]string{"max": "1"}, engine.OpSet, engine.Float(0.25), engine.Float(0.25)},
		{"int list", feature(engine.PrimitiveIntList), map[string]string{"min": "0", "max": "3"}, engine.OpAppend,
			engine.IntList([]int64{-1, 2, 7}), engine.IntList([]int64{0, 2, 3})},
		{"float list unchanged", feature(engine.PrimitiveFloatList), map[string]string{"min": "0"}, engine.OpSet,
			engine.FloatList([]float64{0, 1}), engine.FloatList([]float64{0, 1})},
		{"null passes", feature(engine.PrimitiveInt), map[string]string{"min": "0"}, engine.OpSet, engine.Null, engine.Null},
		{"incr increment passes", feature(engine.PrimitiveInt), map[string]string{"min": "0"}, engine.OpIncr, engine.Int(-5), engine.Int(-5)},
		{"windowed update", windowed(engine.PrimitiveFloat), map[string]string{"max": "100"}, engine.OpUpdate, engine.Float(1e6), engine.Float(100)},
		{"windowed incr", windowed(engine.PrimitiveInt), map[string]string{"max": "1"}, engine.OpIncr, engine.Int(5), engine.Int(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mw := resolve(t, "clip", tt.f, preSet, tt.cfg)
			got, err := mw(ctx, &engine.Call{Op: tt.op, Stage: engine.StagePreSet, Feature: tt.f}, tt.in)
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("clip(%v) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestClipPostGetAndImmutability(t *testing.T) {
	f := feature(engine.PrimitiveFloatList)
	mw := resolve(t, "clip", f, both, map[string]string{"max": "1"})
	in := []float64{0.5, 2, 3}
	got, err := mw(ctx, &engine.Call{Op: engine.OpGet, Stage: engine.StagePostGet, Feature: f}, engine.FloatList(in))
	if err != nil || !got.Equal(engine.FloatList([]float64{0.5, 1, 1})) {
		t.Fatalf("clip = %v, %v", got, err)
	}
	if !slices.Equal(in, []float64{0.5, 2, 3}) {
		t.Fatalf("clip modified its input: %v", in)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		f       *engine.Feature
		cfg     map[string]string
		op      engine.Op
		in      engine.Value
		wantMsg string // "" means accepted
	}{
		{"int inside", feature(engine.PrimitiveInt), map[string]string{"min": "0", "max": "10"}, engine.OpSet, engine.Int(10), ""},
		{"int below", feature(engine.PrimitiveInt), map[string]string{"min": "0", "max": "10"}, engine.OpSet, engine.Int(-1), "below the minimum 0"},
		{"int above", feature(engine.PrimitiveInt), map[string]string{"max": "10"}, engine.OpSet, engine.Int(11), "above the maximum 10"},
		{"float fraction above", feature(engine.PrimitiveFloat), map[string]string{"max": "1"}, engine.OpSet, engine.Float(1.0000001), "above the maximum 1"},
		{"float NaN", feature(engine.PrimitiveFloat), map[string]string{"min": "0"}, engine.OpSet, engine.Float(math.NaN()), "not in [0, +Inf]"},
		{"incr passes", feature(engine.PrimitiveInt), map[string]string{"min": "0"}, engine.OpIncr, engine.Int(-1), ""},
		{"windowed update", windowed(engine.PrimitiveFloat), map[string]string{"min": "0"}, engine.OpUpdate, engine.Float(-1), "below the minimum 0"},
		{"float list element", feature(engine.PrimitiveFloatList), map[string]string{"min": "0"}, engine.OpAppend, engine.FloatList([]float64{1, -2}), "element 1: "},
		{"int list length", feature(engine.PrimitiveIntList), map[string]string{"max_len": "2"}, engine.OpSet, engine.IntList([]int64{1, 2, 3}), "3 elements, more than max_len 2"},
		{"bool list length ok", feature(engine.PrimitiveBoolList), map[string]string{"min_len": "1"}, engine.OpSet, engine.BoolList([]bool{true}), ""},
		{"empty list too short", feature(engine.PrimitiveTimestampList), map[string]string{"min_len": "1"}, engine.OpSet, engine.TimestampList(nil), "0 elements, fewer than min_len 1"},
		{"string runes", feature(engine.PrimitiveString), map[string]string{"max_len": "3"}, engine.OpSet, engine.String("日本語"), ""},
		{"string too long", feature(engine.PrimitiveString), map[string]string{"max_len": "3"}, engine.OpSet, engine.String("abcd"), "4 characters"},
		{"pattern", feature(engine.PrimitiveString), map[string]string{"pattern": `^[a-z]+@[a-z.]+$`}, engine.OpSet, engine.String("a@b.io"), ""},
		{"pattern mismatch", feature(engine.PrimitiveString), map[string]string{"pattern": `^[a-z]+$`}, engine.OpSet, engine.String("A1"), `"A1" does not match`},
		{"pattern long value", feature(engine.PrimitiveString), map[string]string{"pattern": `^x$`}, engine.OpSet, engine.String(strings.Repeat("y", 1000)), `yyy"… does not match`},
		{"string list pattern", feature(engine.PrimitiveStringList), map[string]string{"pattern": `^\d+$`}, engine.OpAppend, engine.StringList([]string{"1", "x"}), "element 1: "},
		{"null passes", feature(engine.PrimitiveString), map[string]string{"min_len": "1"}, engine.OpSet, engine.Null, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mw := resolve(t, "validate", tt.f, preSet, tt.cfg)
			got, err := mw(ctx, &engine.Call{Op: tt.op, Stage: engine.StagePreSet, Feature: tt.f}, tt.in)
			if tt.wantMsg == "" {
				if err != nil || !got.Equal(tt.in) {
					t.Fatalf("validate(%v) = %v, %v; want it accepted", tt.in, got, err)
				}
				return
			}
			if !errors.Is(err, engine.ErrRejected) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("validate(%v): err = %v, want ErrRejected mentioning %q", tt.in, err, tt.wantMsg)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name    string
		mw      string
		f       *engine.Feature
		stages  []engine.Stage
		cfg     map[string]string
		wantMsg string
	}{
		{"clip string feature", "clip", feature(engine.PrimitiveString), preSet, map[string]string{"min": "0"}, "needs an int or float"},
		{"clip no bounds", "clip", feature(engine.PrimitiveInt), preSet, nil, "set min, max or both"},
		{"clip min above max", "clip", feature(engine.PrimitiveFloat), preSet, map[string]string{"min": "2", "max": "1"}, "greater than max"},
		{"clip no integer", "clip", feature(engine.PrimitiveInt), preSet, map[string]string{"min": "0.2", "max": "0.8"}, "no integer"},
		{"clip bad number", "clip", feature(engine.PrimitiveInt), preSet, map[string]string{"min": "zero"}, `key "min"`},
		{"clip NaN bound", "clip", feature(engine.PrimitiveFloat), preSet, map[string]string{"max": "NaN"}, `key "max"`},
		{"clip unknown key", "clip", feature(engine.PrimitiveInt), preSet, map[string]string{"mni": "0"}, `unknown key "mni"`},
		{"clip postSet", "clip", feature(engine.PrimitiveInt), []engine.Stage{engine.StagePostSet}, map[string]string{"min": "0"}, "postSet is not supported"},
		{"clip windowed postGet", "clip", windowed(engine.PrimitiveFloat), postGet, map[string]string{"min": "0"}, "windowed"},
		{"validate nothing", "validate", feature(engine.PrimitiveInt), preSet, map[string]string{}, "at least one"},
		{"validate range on string", "validate", feature(engine.PrimitiveString), preSet, map[string]string{"min": "0"}, "min and max need"},
		{"validate len on int", "validate", feature(engine.PrimitiveInt), preSet, map[string]string{"max_len": "3"}, "min_len and max_len need"},
		{"validate negative len", "validate", feature(engine.PrimitiveString), preSet, map[string]string{"min_len": "-1"}, "negative"},
		{"validate len order", "validate", feature(engine.PrimitiveString), preSet, map[string]string{"min_len": "3", "max_len": "2"}, "greater than max_len"},
		{"validate pattern on int list", "validate", feature(engine.PrimitiveIntList), preSet, map[string]string{"pattern": "x"}, "pattern needs"},
		{"validate bad pattern", "validate", feature(engine.PrimitiveString), preSet, map[string]string{"pattern": "("}, `key "pattern"`},
		{"validate preGet", "validate", feature(engine.PrimitiveString), []engine.Stage{engine.StagePreGet}, map[string]string{"min_len": "1"}, "preGet is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := plugins.ResolveMiddleware(ctx, tt.f, engine.MiddlewareRef{Name: tt.mw, Stages: tt.stages, Config: tt.cfg})
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantMsg)
			}
			if !strings.Contains(err.Error(), tt.f.FQN) {
				t.Errorf("error %q does not name the feature", err)
			}
		})
	}
}
