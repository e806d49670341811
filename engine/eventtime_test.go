package engine_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// TestWriteEventTime drives writes through the engine with a fake clock and checks each
// one's outcome, the value left current, and the notification.
func TestWriteEventTime(t *testing.T) {
	type write struct {
		op  engine.Op
		val any
		ago time.Duration // the write's timestamp is t0 − ago
	}
	type want struct {
		outcome engine.WriteOutcome
		value   engine.Value  // WriteResult.Value
		current time.Duration // for a superseded write: t0 − the current value's timestamp
		kept    bool
	}
	limit := func() *engine.Feature { return scalar("fraud.limit", engine.PrimitiveInt) }
	versioned := func() *engine.Feature {
		f := scalar("fraud.limit", engine.PrimitiveInt)
		f.KeepPrevious = &engine.KeepPrevious{Versions: 2, Over: 48 * time.Hour}
		return f
	}
	tests := []struct {
		name    string
		feature func() *engine.Feature
		writes  []write
		want    []want
		get     map[string]int64 // selector → value read after the writes
	}{
		{
			name:    "late set superseded and dropped",
			feature: limit,
			writes:  []write{{engine.OpSet, 500, 0}, {engine.OpSet, 600, 24 * time.Hour}},
			want: []want{
				{engine.WriteApplied, engine.Int(500), 0, false},
				{engine.WriteSuperseded, engine.Int(600), 0, false},
			},
			get: map[string]int64{"fraud.limit": 500},
		},
		{
			name:    "late set kept as a previous version",
			feature: versioned,
			writes:  []write{{engine.OpSet, 400, 2 * time.Hour}, {engine.OpSet, 500, 0}, {engine.OpSet, 600, time.Hour}},
			want: []want{
				{engine.WriteApplied, engine.Int(400), 0, false},
				{engine.WriteApplied, engine.Int(500), 0, false},
				{engine.WriteSuperseded, engine.Int(600), 0, true},
			},
			get: map[string]int64{"fraud.limit": 500, "fraud.limit@-1": 600, "fraud.limit@-2": 400},
		},
		{
			name:    "late set beyond versions dropped",
			feature: versioned,
			writes:  []write{{engine.OpSet, 1, 2 * time.Hour}, {engine.OpSet, 2, time.Hour}, {engine.OpSet, 3, 0}, {engine.OpSet, 9, 3 * time.Hour}},
			want: []want{
				{engine.WriteApplied, engine.Int(1), 0, false},
				{engine.WriteApplied, engine.Int(2), 0, false},
				{engine.WriteApplied, engine.Int(3), 0, false},
				{engine.WriteSuperseded, engine.Int(9), 0, false},
			},
			get: map[string]int64{"fraud.limit": 3, "fraud.limit@-1": 2, "fraud.limit@-2": 1},
		},
		{
			name:    "equal timestamps: last writer wins",
			feature: versioned,
			writes:  []write{{engine.OpSet, 1, time.Minute}, {engine.OpSet, 2, time.Minute}},
			want: []want{
				{engine.WriteApplied, engine.Int(1), 0, false},
				{engine.WriteApplied, engine.Int(2), 0, false},
			},
			get: map[string]int64{"fraud.limit": 2, "fraud.limit@-1": 1},
		},
		{
			name:    "late update of a scalar is a late set",
			feature: limit,
			writes:  []write{{engine.OpUpdate, 7, time.Minute}, {engine.OpUpdate, 8, time.Hour / 2}},
			want: []want{
				{engine.WriteApplied, engine.Int(7), 0, false},
				{engine.WriteSuperseded, engine.Int(8), time.Minute, false},
			},
			get: map[string]int64{"fraud.limit": 7},
		},
		{
			name:    "incr counts every call",
			feature: limit,
			writes:  []write{{engine.OpIncr, 1, 0}, {engine.OpIncr, 2, time.Hour / 2}, {engine.OpSet, 100, time.Minute}},
			want: []want{
				{engine.WriteApplied, engine.Int(1), 0, false},
				{engine.WriteApplied, engine.Int(3), 0, false},
				{engine.WriteSuperseded, engine.Int(100), 0, false}, // the counter is at t0
			},
			get: map[string]int64{"fraud.limit": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			fx.apply(t, tt.feature())
			k := engine.Keys{"id": "c1"}
			for i, w := range tt.writes {
				ts := t0.Add(-w.ago)
				got, err := fx.e.Write(ctx, w.op, "fraud.limit", k, w.val, ts)
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				wt := tt.want[i]
				if got.Outcome != wt.outcome || !got.Value.Equal(wt.value) || got.FQN != "fraud.limit" || !got.Timestamp.Equal(ts) {
					t.Errorf("write %d (%s %v at −%v) = %+v, want %s of %v", i, w.op, w.val, w.ago, got, wt.outcome, wt.value)
				}
				if got.Superseded() {
					if cur := t0.Add(-wt.current); !got.Current.Equal(cur) || got.Kept != wt.kept {
						t.Errorf("write %d: superseded by %v (kept %v), want by %v (kept %v)", i, got.Current, got.Kept, cur, wt.kept)
					}
				}
				n := fx.notes.ns[len(fx.notes.ns)-1]
				if n.Outcome != wt.outcome || !n.Value.Equal(wt.value) || !n.Timestamp.Equal(ts) {
					t.Errorf("write %d: notification %+v, want outcome %s, value %v", i, n, wt.outcome, wt.value)
				}
			}
			if len(fx.notes.ns) != len(tt.writes) {
				t.Errorf("%d notifications for %d writes", len(fx.notes.ns), len(tt.writes))
			}
			for sel, want := range tt.get {
				res, err := fx.e.Get(ctx, sel, k)
				if err != nil || !res.Value.Equal(engine.Int(want)) {
					t.Errorf("Get %s = %v, %v; want %d", sel, res.Value, err, want)
				}
			}
		})
	}
}

// TestWriteOutcomeOfEveryOp checks that appends and window adds are always applied, and
// that the Set/Update wrappers return the same value as Write.
func TestWriteOutcomeOfEveryOp(t *testing.T) {
	fx := newFixture(t)
	fx.apply(t, scalar("t.tags", engine.PrimitiveStringList))
	fx.apply(t, windowed("t.amount"))
	k := engine.Keys{"id": "a"}
	steps := []struct {
		op   engine.Op
		fqn  string
		val  any
		ago  time.Duration
		want engine.Value
	}{
		{engine.OpAppend, "t.tags", "x", 0, engine.StringList([]string{"x"})},
		{engine.OpAppend, "t.tags", "y", time.Hour / 2, engine.StringList([]string{"x", "y"})},
		{engine.OpUpdate, "t.tags", "z", time.Hour / 2, engine.StringList([]string{"x", "y", "z"})},
		{engine.OpUpdate, "t.amount", 5.0, 0, engine.Null},
		{engine.OpSet, "t.amount", 1.0, 30 * time.Minute, engine.Null},
	}
	for i, s := range steps {
		got, err := fx.e.Write(ctx, s.op, s.fqn, k, s.val, t0.Add(-s.ago))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got.Outcome != engine.WriteApplied || !got.Value.Equal(s.want) {
			t.Errorf("step %d (%s %s %v) = %+v, want applied, %v", i, s.op, s.fqn, s.val, got, s.want)
		}
	}
	if _, err := fx.e.Write(ctx, engine.OpGet, "t.tags", k, "x", time.Time{}); err == nil {
		t.Error("Write(OpGet) succeeded")
	}
}

func TestWriteOutcomeString(t *testing.T) {
	for o, want := range map[engine.WriteOutcome]string{engine.WriteApplied: "applied", engine.WriteSuperseded: "superseded", 0: "unknown"} {
		if got := o.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", o, got, want)
		}
	}
}

// TestIngestOutOfOrder feeds rows out of event-time order to a scalar feature: the latest
// row is current whatever the order, and the late rows are counted as superseded.
func TestIngestOutOfOrder(t *testing.T) {
	last := func(_ context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
		return engine.ProgramResult{Value: engine.Float(float64(call.Row["amount_cents"].Int()) / 100)}, nil
	}
	fx := programFixture(t, loader{"amount": amountProgram, "last": last})
	f := scalar("fraud.last_amount", engine.PrimitiveFloat)
	f.Keys = []string{"card_id"}
	f.DataSource = "fraud.transactions"
	f.Builder = engine.Builder{Kind: "wasm", Module: "last"}
	fx.apply(t, f)
	fx.notes.ns = nil
	res, err := fx.e.Ingest(ctx, "fraud.transactions", rows(t, `[
		{"card_id": "c1", "amount_cents": 300, "ts": "2026-11-23T11:58:00Z"},
		{"card_id": "c1", "amount_cents": 100, "ts": "2026-11-23T11:56:00Z"},
		{"card_id": "c1", "amount_cents": 200, "ts": "2026-11-23T11:57:00Z"}
	]`))
	// Every row also feeds fraud.amount (a window, never superseded): 6 values written.
	if err != nil || res.Written != 6 || res.Superseded != 2 {
		t.Fatalf("ingest = %+v, %v; want 6 written, 2 superseded", res, err)
	}
	got, err := fx.e.Get(ctx, "fraud.last_amount", engine.Keys{"card_id": "c1"})
	if err != nil || got.Value.Float() != 3 || !got.Timestamp.Equal(t0.Add(-2*time.Minute)) {
		t.Fatalf("Get = %+v, %v; want 3 at 11:58", got, err)
	}
	var outcomes []engine.WriteOutcome
	for _, n := range fx.notes.ns {
		if n.FQN == "fraud.last_amount" {
			outcomes = append(outcomes, n.Outcome)
		}
	}
	if want := []engine.WriteOutcome{engine.WriteApplied, engine.WriteSuperseded, engine.WriteSuperseded}; !slices.Equal(outcomes, want) {
		t.Errorf("notification outcomes = %v, want %v", outcomes, want)
	}
}
