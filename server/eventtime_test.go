package server_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// TestWriteOutcome checks over the real API, on every protocol, that Set and Update say
// whether a write became current: a late write is superseded, kept as a previous version
// within keepPrevious.versions and dropped beyond them, and the current value stays.
func TestWriteOutcome(t *testing.T) {
	e := start(t, envOptions{})
	e.apply(`
apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: limit, namespace: fraud}
spec:
  primitive: int
  freshness: 1h
  staleness: 48h
  keepPrevious: {versions: 1, over: 48h}
  keys: [card_id]
`, nil, "")
	now := time.Now().Truncate(time.Second)
	at := func(ago time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(-ago)) }
	const (
		applied    = ospreyv1.WriteOutcome_WRITE_OUTCOME_APPLIED
		superseded = ospreyv1.WriteOutcome_WRITE_OUTCOME_SUPERSEDED
	)
	type result struct {
		outcome ospreyv1.WriteOutcome
		value   int64
		ts      *timestamppb.Timestamp
		current *timestamppb.Timestamp
		kept    bool
	}
	steps := []struct {
		name   string
		update bool
		value  float64
		ago    time.Duration
		want   result
	}{
		{"current", false, 500, 0, result{applied, 500, at(0), nil, false}},
		{"yesterday, kept", false, 600, 24 * time.Hour, result{superseded, 600, at(24 * time.Hour), at(0), true}},
		{"older still, dropped", true, 700, 30 * time.Hour, result{superseded, 700, at(30 * time.Hour), at(0), false}},
		{"same time, last writer wins", true, 550, 0, result{applied, 550, at(0), nil, false}},
	}
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			ctx := context.Background()
			c := e.clients(p)
			card := keys("limit-" + p.name)
			for _, s := range steps {
				var got result
				v := structpb.NewNumberValue(s.value)
				if s.update {
					res, err := c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: "fraud.limit", Keys: card, Value: v, Timestamp: at(s.ago)}))
					if err != nil {
						t.Fatalf("%s: %v", s.name, err)
					}
					m := res.Msg
					got = result{m.GetOutcome(), m.GetValue().GetIntValue(), m.GetTimestamp(), m.GetCurrentTimestamp(), m.GetKeptAsPrevious()}
				} else {
					res, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.limit", Keys: card, Value: v, Timestamp: at(s.ago)}))
					if err != nil {
						t.Fatalf("%s: %v", s.name, err)
					}
					m := res.Msg
					if m.GetFqn() != "fraud.limit" {
						t.Errorf("%s: fqn = %q, want fraud.limit", s.name, m.GetFqn())
					}
					got = result{m.GetOutcome(), m.GetValue().GetIntValue(), m.GetTimestamp(), m.GetCurrentTimestamp(), m.GetKeptAsPrevious()}
				}
				if got.outcome != s.want.outcome || got.value != s.want.value || got.kept != s.want.kept ||
					!sameTime(got.ts, s.want.ts) || !sameTime(got.current, s.want.current) {
					t.Errorf("%s = %+v, want %+v", s.name, got, s.want)
				}
			}
			for sel, want := range map[string]int64{"fraud.limit": 550, "fraud.limit@-1": 500} {
				res, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: sel, Keys: card}))
				if err != nil || !res.Msg.GetFound() || res.Msg.GetValue().GetIntValue() != want {
					t.Errorf("Get %s = %v, %v; want %d", sel, res.Msg, err, want)
				}
			}
		})
	}
}

// sameTime compares two optional timestamps.
func sameTime(a, b *timestamppb.Timestamp) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.AsTime().Equal(b.AsTime())
}
