package engine_test

import (
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// TestEnvelopeRoundTrip: every field and value kind survives the binary form, and truncated
// or padded encodings are errors, not panics.
func TestEnvelopeRoundTrip(t *testing.T) {
	ts := time.Date(2026, 12, 2, 1, 2, 3, 456789, time.UTC)
	envs := []engine.Envelope{
		{},
		{From: engine.Address{FQN: "a.b", Keys: engine.Keys{"id": "x\x00é", "k2": ""}}, To: engine.Address{FQN: "a.c", Keys: engine.Keys{"id": "y"}},
			Value: engine.StringList([]string{"", "z"}), Timestamp: ts, Due: ts.Add(time.Hour), Token: "tok", Hops: 200, Attempts: 9},
		{Egress: "ns.alerts", Row: engine.Row{"i": engine.Int(-1 << 63), "f": engine.Float(-0.5), "s": engine.String("s"), "b": engine.Bool(true),
			"t": engine.Timestamp(ts), "n": engine.Null, "il": engine.IntList([]int64{1, -2}), "fl": engine.FloatList([]float64{1.5}),
			"bl": engine.BoolList([]bool{true, false}), "tl": engine.TimestampList([]time.Time{ts}), "sl": engine.StringList(nil)}},
	}
	for i, env := range envs {
		b, err := env.MarshalBinary()
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		var got engine.Envelope
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		again, _ := got.MarshalBinary()
		if string(again) != string(b) {
			t.Fatalf("%d: round trip changed the encoding:\n%+v\n%+v", i, env, got)
		}
		if got.Hops != env.Hops || got.Token != env.Token || !got.Due.Equal(env.Due) || !got.Timestamp.Equal(env.Timestamp) || !got.Value.Equal(env.Value) || len(got.Row) != len(env.Row) {
			t.Fatalf("%d: got %+v, want %+v", i, got, env)
		}
		for j := range b {
			var x engine.Envelope
			if err := x.UnmarshalBinary(b[:j]); err == nil {
				t.Fatalf("%d: the encoding cut at %d of %d bytes decoded", i, j, len(b))
			}
		}
		if err := new(engine.Envelope).UnmarshalBinary(append(b, 0)); err == nil {
			t.Fatalf("%d: a trailing byte decoded", i)
		}
	}
}

// FuzzEnvelope: any bytes decode or fail; never a panic or a huge allocation.
func FuzzEnvelope(f *testing.F) {
	b, _ := (&engine.Envelope{From: engine.Address{FQN: "a.b", Keys: engine.Keys{"id": "x"}}, Value: engine.IntList([]int64{1, 2})}).MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var env engine.Envelope
		if env.UnmarshalBinary(data) == nil {
			if _, err := env.MarshalBinary(); err != nil {
				t.Fatalf("decoded, but does not encode: %v", err)
			}
		}
	})
}
