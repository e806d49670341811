package statetest

import (
	"time"

	"github.com/osprey-ml/osprey/engine"
)

func testVersions(e *env) {
	f := e.feature("versions", engine.PrimitiveString, staleness(2*time.Hour), keepPrevious(2, time.Hour))
	k := e.keys(f, "a")
	t := func(m int) time.Time { return e.now.Add(time.Duration(-m) * time.Minute) }
	e.set(f, k, engine.String("A"), t(4))
	e.wantAbsent(f, k, 1)
	e.set(f, k, engine.String("B"), t(3))
	e.set(f, k, engine.String("C"), t(2))
	e.wantGet(f, k, 0, engine.String("C"), t(2))
	e.wantGet(f, k, 1, engine.String("B"), t(3))
	e.wantGet(f, k, 2, engine.String("A"), t(4))
	e.wantAbsent(f, k, 3)
	e.set(f, k, engine.String("D"), t(1))
	e.wantGet(f, k, 0, engine.String("D"), t(1))
	e.wantGet(f, k, 1, engine.String("C"), t(2))
	e.wantGet(f, k, 2, engine.String("B"), t(3))
	e.wantAbsent(f, k, 3)
	for range 5 { // the ring wraps several times
		e.set(f, k, engine.String("E"), t(0))
	}
	e.wantGet(f, k, 2, engine.String("E"), t(0))

	// A feature that keeps no previous values.
	n := e.feature("no_versions", engine.PrimitiveString)
	e.set(n, k, engine.String("x"), t(2))
	e.set(n, k, engine.String("y"), t(1))
	e.wantAbsent(n, k, 1)
}

func testVersionsOver(e *env) {
	// A previous value older than Over is not found, whatever the current one.
	f := e.feature("versions_over", engine.PrimitiveInt, staleness(2*time.Hour), keepPrevious(3, time.Hour))
	k := e.keys(f, "a")
	e.set(f, k, engine.Int(1), e.now.Add(-61*time.Minute))
	e.set(f, k, engine.Int(2), e.now.Add(-59*time.Minute))
	e.set(f, k, engine.Int(3), e.now)
	e.wantGet(f, k, 0, engine.Int(3), e.now)
	e.wantGet(f, k, 1, engine.Int(2), e.now.Add(-59*time.Minute))
	e.wantAbsent(f, k, 2)
	e.wantAbsent(f, k, 3)

	// Previous values outlive staleness, up to Over.
	s := e.feature("versions_outlive", engine.PrimitiveInt, staleness(10*time.Minute), keepPrevious(1, time.Hour))
	e.set(s, k, engine.Int(1), e.now.Add(-30*time.Minute))
	e.set(s, k, engine.Int(2), e.now.Add(-20*time.Minute))
	e.wantAbsent(s, k, 0)
	e.wantGet(s, k, 1, engine.Int(1), e.now.Add(-30*time.Minute))
}

func testVersionsAppendIncr(e *env) {
	k := "a"
	c := e.feature("versions_incr", engine.PrimitiveInt, keepPrevious(3, time.Hour))
	for i, by := range []int64{1, 2, 3} {
		e.incr(c, k, engine.Int(by), e.now.Add(time.Duration(i-3)*time.Second))
	}
	e.wantGet(c, k, 0, engine.Int(6), e.now.Add(-time.Second))
	e.wantGet(c, k, 1, engine.Int(3), e.now.Add(-2*time.Second))
	e.wantGet(c, k, 2, engine.Int(1), e.now.Add(-3*time.Second))
	e.wantAbsent(c, k, 3)

	l := e.feature("versions_append", engine.PrimitiveStringList, keepPrevious(2, time.Hour))
	ts := e.now.Add(-time.Second)
	e.append(l, k, engine.StringList([]string{"a"}), ts)
	e.append(l, k, engine.StringList([]string{"b"}), ts)
	e.append(l, k, engine.StringList([]string{"c"}), ts)
	e.wantGet(l, k, 0, engine.StringList([]string{"a", "b", "c"}), ts)
	e.wantGet(l, k, 1, engine.StringList([]string{"a", "b"}), ts)
	e.wantGet(l, k, 2, engine.StringList([]string{"a"}), ts)
}

func testStaleness(e *env) {
	f := e.feature("staleness", engine.PrimitiveFloat) // staleness 1h
	cases := []struct {
		name  string
		age   time.Duration
		found bool
	}{
		{"future", -time.Minute, true},
		{"fresh", time.Second, true},
		{"not_fresh", 30 * time.Minute, true},
		{"minute_before_staleness", time.Hour - time.Minute, true},
		{"just_stale", time.Hour + time.Millisecond, false},
		{"long_stale", 48 * time.Hour, false},
	}
	for _, c := range cases {
		k := e.keys(f, c.name)
		ts := e.now.Add(-c.age)
		e.set(f, k, engine.Float(1.5), ts)
		if c.found {
			e.wantGet(f, k, 0, engine.Float(1.5), ts)
		} else {
			e.wantAbsent(f, k, 0)
		}
	}
}
