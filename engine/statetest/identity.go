package statetest

import (
	"time"

	"github.com/osprey-ml/osprey/engine"
)

func testFeatureIsolation(e *env) {
	a := e.feature("iso", engine.PrimitiveInt, keyNames("user_id"))
	b := e.feature("iso", engine.PrimitiveInt, keyNames("user_id"))
	k := e.keys(a, "u1")
	ts := e.now.Add(-time.Second)
	e.set(a, k, engine.Int(1), ts)
	e.set(b, k, engine.Int(2), ts)
	e.incr(a, k, engine.Int(10), ts)
	e.wantGet(a, k, 0, engine.Int(11), ts)
	e.wantGet(b, k, 0, engine.Int(2), ts)

	// FQN and keys must be separated: (x, "y1") and (xy, "1") are different entities.
	x := &engine.Feature{}
	*x = *a
	x.FQN = a.FQN + "x"
	xy := &engine.Feature{}
	*xy = *a
	xy.FQN = a.FQN + "xy"
	e.set(x, "y1", engine.Int(3), ts)
	e.set(xy, "1", engine.Int(4), ts)
	e.wantGet(x, "y1", 0, engine.Int(3), ts)
	e.wantGet(xy, "1", 0, engine.Int(4), ts)
	e.wantAbsent(x, "y", 0)

	wa := e.feature("iso_window", engine.PrimitiveFloat, windowed(time.Minute, time.Hour), keyNames("user_id"))
	wb := e.feature("iso_window", engine.PrimitiveFloat, windowed(time.Minute, time.Hour), keyNames("user_id"))
	e.windowAdd(wa, k, 5, ts)
	span := engine.AliveSpan(e.now, wa.Staleness, wa.Granularity)
	if bs := e.buckets(wb, k, span); len(bs) != 0 {
		e.Errorf("a window write to one feature shows in another with the same keys: %+v", bs)
	}
	if bs := e.buckets(wa, k, span); len(bs) != 1 || bs[0].Sum != 5 {
		e.Errorf("window buckets = %+v, want one with sum 5", bs)
	}
}

func testKeyEncoding(e *env) {
	ts := e.now.Add(-time.Second)
	f := e.feature("keys", engine.PrimitiveInt)
	values := []string{"", ";", `\`, "a;b", `a\;b`, `a\\;b`, "a:b", ":", "::", "日本語", "🦅", " ", " a ", "\t\n", "nul\x00", "a*b?[c]", "{tag}", "x", "X"}
	for i, v := range values {
		e.set(f, e.keys(f, v), engine.Int(int64(i)), ts)
	}
	for i, v := range values {
		e.wantGet(f, e.keys(f, v), 0, engine.Int(int64(i)), ts)
	}
	// Two keys: values that a naive join would confuse are distinct entities.
	m := e.feature("keys2", engine.PrimitiveInt, keyNames("a", "b"))
	pairs := [][2]string{{"x;y", "z"}, {"x", "y;z"}, {"x", "y"}, {"", ";"}, {";", ""}, {`\`, ""}, {"", `\`}, {"x:y", "z"}, {"x", "y:z"}, {"", ""}}
	for i, p := range pairs {
		e.set(m, e.keys(m, p[0], p[1]), engine.Int(int64(i)), ts)
	}
	for i, p := range pairs {
		e.wantGet(m, e.keys(m, p[0], p[1]), 0, engine.Int(int64(i)), ts)
	}
}
