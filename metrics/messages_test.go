package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/metrics"
	"github.com/osprey-ml/osprey/plugins/state/memory"
)

type loopProgram struct{}

// Run sends the next number to its own address (a loop the hop limit ends) and emits every
// message to the egress "refuses", which fails permanently.
func (loopProgram) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	in := call.Invocation
	n := int64(0)
	if call.Message != nil {
		n = call.Message.Value.Int()
	}
	_ = in.Send(ctx, in.Address(), engine.Int(n+1)) // refused at the hop limit
	if err := in.Emit(ctx, "refuses", engine.Row{"n": engine.Int(n)}); err != nil {
		return engine.ProgramResult{}, err
	}
	return engine.ProgramResult{Value: engine.Int(n)}, nil
}

type loopLoader struct{}

func (loopLoader) LoadProgram(context.Context, *engine.Feature) (engine.Program, error) {
	return loopProgram{}, nil
}

type refusing struct{}

func (refusing) Egress(name string) (engine.Egress, error) {
	if name != "default.refuses" {
		return nil, fmt.Errorf("no egress %q", name)
	}
	return refusing{}, nil
}

func (refusing) Emit(context.Context, engine.EgressMessage) error {
	return fmt.Errorf("%w: 400 Bad Request", engine.ErrPermanent)
}

// TestMessageSeries: deliveries by outcome, dead letters and hop-limit refusals are counted
// per sending feature.
func TestMessageSeries(t *testing.T) {
	m := metrics.New()
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	e := engine.New(st, engine.WithObserver(m.Observer()), engine.WithPrograms(loopLoader{}), engine.WithEgresses(refusing{}),
		engine.WithMaxHops(3), engine.WithDelivery(engine.Delivery{Poll: -1}), engine.WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { e.Close() })
	if err := e.ApplyDataSource(ctx, &engine.DataSource{FQN: "m.rows", Kind: "rest", KeyFields: []string{"id"}}); err != nil {
		t.Fatal(err)
	}
	f := &engine.Feature{FQN: "m.loop", Primitive: engine.PrimitiveInt, Keys: []string{"id"}, Freshness: time.Hour, Staleness: 2 * time.Hour,
		Timeout: time.Second, DataSource: "m.rows", Builder: engine.Builder{Kind: "wasm", Module: "x"}, Messages: engine.PrimitiveInt}
	if err := e.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Ingest(ctx, "m.rows", []engine.Row{{"id": engine.String("a")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.DeliverMessages(ctx); err != nil && !errors.Is(err, engine.ErrPermanent) {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{
		`osprey_messages_delivered_total{egress="",feature="m.loop",outcome="ok"}`:                   3, // hops 1, 2, 3
		`osprey_messages_delivered_total{egress="default.refuses",feature="m.loop",outcome="error"}`: 4, // the row's and each message's
		`osprey_messages_dead_lettered_total{egress="default.refuses",feature="m.loop"}`:             4,
		`osprey_messages_hop_limit_total{feature="m.loop"}`:                                          1,
	} {
		if got := value(t, m.Registry(), series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}
