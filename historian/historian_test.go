package historian_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/plugins/notifier/memory"
	memstate "github.com/osprey-ml/osprey/plugins/state/memory"
)

var ctx = context.Background()

// memStorage is an in-memory Storage whose Puts fail while failing is set.
type memStorage struct {
	mu      sync.Mutex
	objects map[string][]byte
	failing atomic.Bool
	puts    atomic.Int64
}

func newMemStorage() *memStorage { return &memStorage{objects: map[string][]byte{}} }

func (s *memStorage) Put(_ context.Context, key string, body []byte) error {
	s.puts.Add(1)
	if s.failing.Load() {
		return errors.New("storage unavailable")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[key] = bytes.Clone(body)
	return nil
}

func (s *memStorage) List(_ context.Context, prefix string) ([]historian.ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []historian.ObjectInfo
	for k, v := range s.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, historian.ObjectInfo{Key: k, Size: int64(len(v))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

type memObject struct{ *bytes.Reader }

func (memObject) Close() error { return nil }

func (s *memStorage) Open(_ context.Context, key string) (historian.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, historian.ErrNotFound)
	}
	return memObject{bytes.NewReader(b)}, nil
}

func (s *memStorage) Close() error { return nil }

// records decodes every object, keyed by object key.
func (s *memStorage) records(t *testing.T) (keys []string, recs []historian.Record) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, b := range s.objects {
		if strings.HasPrefix(k, historian.FlushManifestPrefix) {
			continue
		}
		keys = append(keys, k)
		rs, err := historian.DecodeParquet(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("decode %s: %v", k, err)
		}
		recs = append(recs, rs...)
	}
	sort.Strings(keys)
	return keys, recs
}

type fixture struct {
	eng     *engine.Engine
	n       *memory.Notifier
	storage *memStorage
	now     atomic.Pointer[time.Time]
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	fx := &fixture{storage: newMemStorage()}
	fx.now.Store(&t0)
	clock := func() time.Time { return *fx.now.Load() }
	n, err := memory.New(memory.WithGroups(historian.DefaultGroup), memory.WithRetryDelay(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	fx.n = n
	st := memstate.New(memstate.WithClock(clock))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	fx.eng = engine.New(st, engine.WithNotifier(n), engine.WithClock(clock), engine.WithLogger(quiet))
	for _, f := range []*engine.Feature{
		{FQN: "fraud.limit", Primitive: engine.PrimitiveFloat, Keys: []string{"card_id"}, Freshness: time.Hour, Staleness: 24 * time.Hour,
			Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}},
		{FQN: "fraud.tags", Primitive: engine.PrimitiveStringList, Keys: []string{"card_id", "country"}, Freshness: time.Hour, Staleness: 24 * time.Hour,
			Timeout: time.Second, Builder: engine.Builder{Kind: engine.BuilderSourceless}},
		{FQN: "fraud.amount", Primitive: engine.PrimitiveFloat, Keys: []string{"card_id"}, Freshness: time.Minute, Staleness: 10 * time.Minute,
			Timeout: time.Second, Aggrs: engine.AllAggrs, Granularity: time.Minute, Builder: engine.Builder{Kind: engine.BuilderSourceless}},
	} {
		if err := fx.eng.Apply(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { fx.eng.Close(); st.Close(); n.Close() })
	return fx
}

func (fx *fixture) historian(t *testing.T, cfg historian.Config) *historian.Historian {
	t.Helper()
	cfg.Engine, cfg.Notifier, cfg.Storage = fx.eng, fx.n, fx.storage
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Now = func() time.Time { return *fx.now.Load() }
	if cfg.FlushAge == 0 {
		cfg.FlushAge = time.Hour // flushes only when asked, unless a test says otherwise
	}
	h, err := historian.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// run runs h until the returned stop is called; stop returns Run's error.
func run(h *historian.Historian) (stop func() error) {
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- h.Run(rctx) }()
	return func() error { cancel(); return <-errc }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestWritesRecorded: every write, superseded ones too, is recorded with its value, keys,
// op and times; one object per feature and event date, under its Hive-style partition.
func TestWritesRecorded(t *testing.T) {
	fx := newFixture(t)
	h := fx.historian(t, historian.Config{})
	stop := run(h)
	c1 := engine.Keys{"card_id": "c1"}
	mustWrite := func(op engine.Op, fqn string, keys engine.Keys, v any, ts time.Time) {
		t.Helper()
		if _, err := fx.eng.Write(ctx, op, fqn, keys, v, ts); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(engine.OpSet, "fraud.limit", c1, 1000.0, t0.Add(-time.Hour))
	mustWrite(engine.OpSet, "fraud.limit", c1, 500.0, t0.Add(-2*time.Hour))   // superseded
	mustWrite(engine.OpSet, "fraud.limit", c1, 2000.0, t0.Add(-25*time.Hour)) // another date, superseded too
	mustWrite(engine.OpSet, "fraud.tags", engine.Keys{"card_id": "c1", "country": "FR"}, []any{"a", "b"}, t0)
	waitFor(t, "the notifications", func() bool { return h.Stats().Received == 4 })
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	keys, recs := fx.storage.records(t)
	if len(keys) != 3 {
		t.Fatalf("objects %v: want 3 (two dates of fraud.limit, one of fraud.tags)", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "fqn=fraud.") || !strings.Contains(k, "/date=2026-1") || !strings.HasSuffix(k, ".parquet") {
			t.Errorf("object key %q is not fqn=<fqn>/date=<date>/<name>.parquet", k)
		}
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4: %+v", len(recs), recs)
	}
	var superseded, lists int
	for _, r := range recs {
		if r.Kind != historian.KindWrite || r.Op != engine.OpSet || r.WriteTime.IsZero() || r.Fence != 0 {
			t.Errorf("record %+v", r)
		}
		if r.Superseded {
			superseded++
			if v := r.Value.Float(); v != 500 && v != 2000 {
				t.Errorf("a superseded record holds %v, want the late 500 or 2000", r.Value)
			}
		}
		if r.FQN == "fraud.tags" {
			lists++
			if got := r.Value.Strs(); len(got) != 2 || got[1] != "b" || strings.Join(r.Keys, ",") != "c1,FR" {
				t.Errorf("list record %+v", r)
			}
		}
	}
	if superseded != 2 || lists != 1 {
		t.Errorf("%d superseded, %d list records; want 2 and 1", superseded, lists)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	if s := h.Stats(); s.Pending != 0 || s.Records != 4 || s.Objects != 3 {
		t.Errorf("stats %+v", s)
	}
}

// TestWindowSnapshotsAndFinals: the writes of a batch to one bucket make one snapshot of
// it; a bucket that left its window is collected once as a final record.
func TestWindowSnapshotsAndFinals(t *testing.T) {
	fx := newFixture(t)
	h := fx.historian(t, historian.Config{CollectInterval: 4 * time.Minute})
	stop := run(h)
	defer stop()
	c1 := engine.Keys{"card_id": "c1"}
	for i := range 5 {
		if _, err := fx.eng.Update(ctx, "fraud.amount", c1, float64(10*(i+1)), t0.Add(-30*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fx.eng.Update(ctx, "fraud.amount", c1, 7.0, t0.Add(-3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the notifications", func() bool { return h.Stats().Received == 6 })
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	_, all := fx.storage.records(t)
	var recs []historian.Record
	adds := 0.0
	for _, r := range all {
		if r.Kind == historian.KindWrite {
			adds += r.Value.Float()
			continue
		}
		recs = append(recs, r)
	}
	if adds != 157 {
		t.Errorf("the add records sum to %v, want 157 (every add recorded)", adds)
	}
	if len(recs) != 2 {
		t.Fatalf("%d snapshot records, want 2 (one per bucket touched): %+v", len(recs), recs)
	}
	for _, r := range recs {
		b := r.Bucket
		if r.Kind != historian.KindBucketSnapshot || b == nil || !b.Open || b.End.Sub(b.Start) != time.Minute {
			t.Fatalf("snapshot %+v %+v", r, b)
		}
		if b.Count == 5 && (b.Sum != 150 || b.Min != 10 || b.Max != 50) || b.Count != 5 && (b.Count != 1 || b.Sum != 7) {
			t.Errorf("snapshot aggregates %+v", b)
		}
	}
	// Eleven minutes later both buckets have left the 10-minute window.
	later := t0.Add(11 * time.Minute)
	fx.now.Store(&later)
	if err := h.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Collect(ctx); err != nil { // again: nothing new
		t.Fatal(err)
	}
	_, recs = fx.storage.records(t)
	finals := 0
	for _, r := range recs {
		if r.Kind == historian.KindBucketFinal {
			finals++
			if r.Bucket == nil || r.Bucket.Open {
				t.Errorf("final %+v", r)
			}
		}
	}
	if finals != 2 || h.Stats().FinalBuckets != 2 {
		t.Fatalf("%d final records (stats %d), want 2, once each", finals, h.Stats().FinalBuckets)
	}
}

// TestStorageOutage: while Puts fail nothing is acknowledged or lost; once the storage is
// back every record is written, and writes never failed meanwhile.
func TestStorageOutage(t *testing.T) {
	fx := newFixture(t)
	h := fx.historian(t, historian.Config{FlushAge: 10 * time.Millisecond})
	stop := run(h)
	defer stop()
	fx.storage.failing.Store(true)
	const writes = 200
	for i := range writes {
		if _, err := fx.eng.Set(ctx, "fraud.limit", engine.Keys{"card_id": fmt.Sprint("c", i)}, float64(i), t0); err != nil {
			t.Fatalf("write %d failed during the outage: %v", i, err)
		}
	}
	waitFor(t, "failed puts", func() bool { return fx.storage.puts.Load() >= 3 })
	if s := h.Stats(); s.Records != 0 || s.Pending != writes || s.LastFlushError == "" {
		t.Fatalf("during the outage: %+v", s)
	}
	if n := fx.n.Len(); n != writes {
		t.Fatalf("the notifier holds %d, want all %d unacknowledged", n, writes)
	}
	fx.storage.failing.Store(false)
	waitFor(t, "the records", func() bool { return h.Stats().Records >= writes })
	_, recs := fx.storage.records(t)
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.Keys[0]] = true
	}
	if len(seen) != writes {
		t.Fatalf("%d entities recorded, want %d", len(seen), writes)
	}
	waitFor(t, "the acknowledgements", func() bool { return fx.n.Len() == 0 })
}

// TestShutdownFlush: what is buffered when Run's context ends is written before it returns.
func TestShutdownFlush(t *testing.T) {
	fx := newFixture(t)
	h := fx.historian(t, historian.Config{})
	stop := run(h)
	for i := range 10 {
		if _, err := fx.eng.Set(ctx, "fraud.limit", engine.Keys{"card_id": fmt.Sprint("c", i)}, 1.0, t0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the notifications", func() bool { return h.Stats().Received == 10 })
	_ = stop()
	if _, recs := fx.storage.records(t); len(recs) != 10 {
		t.Fatalf("%d records after shutdown, want 10", len(recs))
	}
	if n := fx.n.Len(); n != 0 {
		t.Fatalf("%d notifications left unacknowledged", n)
	}
}

// fakeLeader hands out leases whose loss the test controls.
type fakeLeader struct {
	fence atomic.Int64
	mu    sync.Mutex
	lose  context.CancelCauseFunc
}

func (l *fakeLeader) Lead(ctx context.Context) (historian.Lease, error) {
	lctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	l.mu.Lock()
	l.lose = cancel
	l.mu.Unlock()
	return historian.Lease{Fence: l.fence.Add(1), Context: lctx, Until: func() time.Time { return time.Now().Add(time.Second) },
		Release: func() { cancel(context.Canceled) }}, nil
}

func (l *fakeLeader) loseLead() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lose(historian.ErrLostLead)
}

// TestLostLead: what was held when the lead was lost is not written under the old fence; it
// is delivered again and written once under the next.
func TestLostLead(t *testing.T) {
	fx := newFixture(t)
	leader := &fakeLeader{}
	h := fx.historian(t, historian.Config{Leader: leader})
	stop := run(h)
	defer stop()
	waitFor(t, "the first term", func() bool { return h.Stats().LeaderTerms == 1 })
	for i := range 5 {
		if _, err := fx.eng.Set(ctx, "fraud.limit", engine.Keys{"card_id": fmt.Sprint("c", i)}, 1.0, t0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the notifications", func() bool { return h.Stats().Received == 5 })
	leader.loseLead()
	waitFor(t, "the second term", func() bool { return h.Stats().LeaderTerms == 2 })
	waitFor(t, "the redelivery", func() bool { return h.Stats().Received == 10 })
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	_, recs := fx.storage.records(t)
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}
	for _, r := range recs {
		if r.Fence != 2 {
			t.Fatalf("record under fence %d, want only the second lease's (2)", r.Fence)
		}
	}
}

// TestIntWindowAdds: the adds of an int windowed feature are recorded as ints, and one
// feature's records never hold up another's.
func TestIntWindowAdds(t *testing.T) {
	fx := newFixture(t)
	clicks := &engine.Feature{FQN: "web.clicks", Primitive: engine.PrimitiveInt, Keys: []string{"user"}, Freshness: time.Minute,
		Staleness: 10 * time.Minute, Timeout: time.Second, Aggrs: engine.AllAggrs, Granularity: time.Minute,
		Builder: engine.Builder{Kind: engine.BuilderSourceless}}
	if err := fx.eng.Apply(ctx, clicks); err != nil {
		t.Fatal(err)
	}
	h := fx.historian(t, historian.Config{})
	stop := run(h)
	defer stop()
	for i := range 3 {
		if _, err := fx.eng.Update(ctx, "web.clicks", engine.Keys{"user": "u1"}, i+1, t0.Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fx.eng.Set(ctx, "fraud.limit", engine.Keys{"card_id": "c1"}, 5.0, t0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the notifications", func() bool { return h.Stats().Received == 4 })
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	_, recs := fx.storage.records(t)
	var sum int64
	limit := false
	for _, r := range recs {
		switch {
		case r.FQN == "web.clicks" && r.Kind == historian.KindWrite:
			if r.Value.Kind() != engine.KindInt {
				t.Fatalf("an int window's add recorded as %v", r.Value.Kind())
			}
			sum += r.Value.Int()
		case r.FQN == "fraud.limit":
			limit = true
		}
	}
	if sum != 6 || !limit || h.Stats().Unencodable != 0 {
		t.Fatalf("adds sum to %d (want 6), fraud.limit recorded: %v, stats %+v", sum, limit, h.Stats())
	}
}

// TestNewLeaderSkipsWhatTheLastWrote: notifications delivered again to a new leader after
// the last one wrote them (and died before acknowledging) are not written again under the
// new fence; others are.
func TestNewLeaderSkipsWhatTheLastWrote(t *testing.T) {
	fx := newFixture(t)
	leader := &fakeLeader{}
	first := fx.historian(t, historian.Config{Leader: leader})
	stop := run(first)
	var notes []engine.Notification
	for i := range 5 {
		w, err := fx.eng.Set(ctx, "fraud.limit", engine.Keys{"card_id": fmt.Sprint("c", i)}, float64(i), t0)
		if err != nil {
			t.Fatal(err)
		}
		notes = append(notes, engine.Notification{Kind: engine.NotifyWrite, Op: engine.OpSet, FQN: "fraud.limit",
			EncodedKeys: fmt.Sprint("c", i), Value: w, Timestamp: t0, Written: t0, Outcome: engine.WriteApplied})
	}
	waitFor(t, "the first leader's records", func() bool { return first.Stats().Received == 5 })
	if err := first.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	_ = stop()

	// The next leader, on a notifier that delivers the same five again and one more.
	n2, err := memory.New(memory.WithGroups(historian.DefaultGroup))
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	extra := notes[0]
	extra.EncodedKeys, extra.Written = "c9", t0.Add(time.Second)
	for _, n := range append(notes, extra) {
		if err := n2.Publish(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	second, err := historian.New(historian.Config{Engine: fx.eng, Notifier: n2, Storage: fx.storage, Leader: leader,
		FlushAge: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return *fx.now.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	stop = run(second)
	defer stop()
	waitFor(t, "the second leader's deliveries", func() bool { return second.Stats().Received == 6 })
	if err := second.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	_, recs := fx.storage.records(t)
	byFence := map[int64]int{}
	for _, r := range recs {
		byFence[r.Fence]++
	}
	if byFence[1] != 5 || byFence[2] != 1 || second.Stats().Skipped != 5 {
		t.Fatalf("records by fence %v, skipped %d: want 5 under the first, only the new one under the second", byFence, second.Stats().Skipped)
	}
}
