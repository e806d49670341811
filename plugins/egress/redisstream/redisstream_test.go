package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/redistest"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/egress"
	"github.com/osprey-ml/osprey/plugins/egress/redisstream"
)

var ts = time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC)

func newStream(t *testing.T, cfg map[string]any) egress.Egress {
	t.Helper()
	eg, err := egress.New(context.Background(), &manifest.Egress{FQN: "fraud.events", Type: "redis-stream", Config: cfg}, egress.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eg.Close() })
	return eg
}

func message(id string) engine.EgressMessage {
	return engine.EgressMessage{
		ID: "fraud.card_spend{card_id=c1}/" + id, Egress: "events", Attempt: 1, Timestamp: ts,
		From: engine.Address{FQN: "fraud.card_spend", Keys: engine.Keys{"card_id": "c1"}},
		Row: engine.Row{"amount": engine.Float(12.5), "count": engine.Int(3), "ok": engine.Bool(true), "id": engine.String("row's own id"),
			"tags": engine.StringList([]string{"a", "b"}), "none": engine.Null, "at": engine.Timestamp(ts)},
	}
}

func TestEmit(t *testing.T) {
	srv := redistest.Standalone(t)
	ctx := context.Background()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	for _, cfg := range []map[string]any{
		{"addrs": []string{srv.Addr()}, "stream": "fraud:events"},
		{"url": "redis://" + srv.Addr() + "/0", "stream": "fraud:events"},
	} {
		eg := newStream(t, cfg)
		if err := eg.Emit(ctx, message("1")); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := c.XRange(ctx, "fraud:events", "-", "+").Result()
	if err != nil || len(entries) != 2 {
		t.Fatalf("XRANGE = %v, %v", entries, err)
	}
	want := map[string]any{
		"id": "fraud.card_spend{card_id=c1}/1", "egress": "fraud.events", "from": "fraud.card_spend{card_id=c1}",
		"timestamp": "2026-01-02T15:04:05.123456789Z", "amount": "12.5", "count": "3", "ok": "true", "row.id": "row's own id",
		"tags": `["a","b"]`, "at": "2026-01-02T15:04:05.123456789Z",
	}
	for _, e := range entries {
		if !reflect.DeepEqual(e.Values, want) {
			t.Errorf("entry %s:\n got %v\nwant %v", e.ID, e.Values, want)
		}
	}
	// The fields' order: the envelope, then the row's in name order.
	raw, err := c.Do(ctx, "XRANGE", "fraud:events", "-", "+", "COUNT", "1").Slice()
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	kv := raw[0].([]any)[1].([]any)
	for i := 0; i < len(kv); i += 2 {
		fields = append(fields, kv[i].(string))
	}
	if want := []string{"id", "egress", "from", "timestamp", "amount", "at", "count", "row.id", "ok", "tags"}; !reflect.DeepEqual(fields, want) {
		t.Errorf("fields %v, want %v", fields, want)
	}
}

func TestValues(t *testing.T) {
	got := redisstream.Values("ns.e", engine.EgressMessage{ID: "x/1", From: engine.Address{FQN: "ns.f"}, Timestamp: ts,
		Row: engine.Row{"egress": engine.Int(1), "from": engine.Null, "b": engine.String("")}})
	want := []string{"id", "x/1", "egress", "ns.e", "from", "ns.f{}", "timestamp", "2026-01-02T15:04:05.123456789Z", "b", "", "row.egress", "1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Values = %q\nwant %q", got, want)
	}
}

func TestMaxLenTrims(t *testing.T) {
	srv := redistest.Standalone(t)
	ctx := context.Background()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	eg := newStream(t, map[string]any{"addrs": srv.Addr(), "stream": "s", "maxLen": "10"})
	const n = 300
	for i := range n {
		if err := eg.Emit(ctx, message(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// MAXLEN ~ trims whole macro nodes (100 entries by default): the stream keeps at least
	// 10 entries and far fewer than it was sent.
	l, err := c.XLen(ctx, "s").Result()
	if err != nil || l < 10 || l >= n {
		t.Errorf("XLEN = %d, %v; want between 10 and %d", l, err, n)
	}
	last, err := c.XRevRangeN(ctx, "s", "+", "-", 1).Result()
	if err != nil || len(last) != 1 || last[0].Values["id"] != "fraud.card_spend{card_id=c1}/299" {
		t.Errorf("newest entry %v, %v", last, err)
	}
	// Without maxLen nothing is trimmed.
	eg = newStream(t, map[string]any{"addrs": srv.Addr(), "stream": "untrimmed"})
	for i := range n {
		if err := eg.Emit(ctx, message(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := c.XLen(ctx, "untrimmed").Result(); l != n || err != nil {
		t.Errorf("XLEN untrimmed = %d, %v", l, err)
	}
}

func TestFailures(t *testing.T) {
	srv := redistest.Standalone(t)
	ctx := context.Background()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.Set(ctx, "str", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	err := newStream(t, map[string]any{"addrs": srv.Addr(), "stream": "str"}).Emit(ctx, message("1"))
	if !errors.Is(err, engine.ErrPermanent) || !strings.Contains(err.Error(), "egress fraud.events: XADD str: WRONGTYPE") {
		t.Errorf("XADD to a string key: %v, want a permanent WRONGTYPE", err)
	}

	eg := newStream(t, map[string]any{"addrs": srv.Addr(), "stream": "s"})
	srv.Stop()
	err = eg.Emit(ctx, message("2"))
	if err == nil || errors.Is(err, engine.ErrPermanent) || !strings.Contains(err.Error(), "egress fraud.events: XADD s: ") {
		t.Errorf("Emit with the server down: %v, want a retryable error", err)
	}
	// The server comes back: the same egress delivers again.
	srv.Start()
	if err := eg.Emit(ctx, message("3")); err != nil {
		t.Errorf("Emit after the server restarted: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := eg.Emit(cctx, message("4")); !errors.Is(err, context.Canceled) || errors.Is(err, engine.ErrPermanent) {
		t.Errorf("Emit with a done context: %v", err)
	}
	if err := eg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := eg.Emit(ctx, message("5")); !errors.Is(err, egress.ErrClosed) || errors.Is(err, engine.ErrPermanent) {
		t.Errorf("Emit after Close: %v", err)
	}
}

// TestNewDoesNotConnect: an egress whose server is down still applies (a restore must not
// quarantine it), and fails only when it emits.
func TestNewDoesNotConnect(t *testing.T) {
	port := redistest.FreePort(t)
	eg := newStream(t, map[string]any{"addrs": fmt.Sprintf("127.0.0.1:%d", port), "stream": "s", "dial-timeout": "200ms"})
	if err := eg.Emit(context.Background(), message("1")); err == nil || errors.Is(err, engine.ErrPermanent) {
		t.Errorf("Emit to nothing: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		cfg    map[string]any
		policy egress.Policy
		want   string
	}{
		{"no stream", map[string]any{"addrs": "a:6379"}, egress.Policy{}, "spec.config.stream: missing"},
		{"no server", map[string]any{"stream": "s"}, egress.Policy{}, "spec.config.url: missing: set url (redis://host:6379/0) or addrs"},
		{"unknown key", map[string]any{"addrs": "a:6379", "stream": "s", "maxlen": "5"}, egress.Policy{}, "spec.config.maxlen: unknown key (did you mean maxLen?) (known: stream, maxLen, url, addrs,"},
		{"negative maxLen", map[string]any{"addrs": "a:6379", "stream": "s", "maxLen": "-1"}, egress.Policy{}, "spec.config.maxLen: -1 is negative"},
		{"maxLen not a number", map[string]any{"addrs": "a:6379", "stream": "s", "maxLen": "lots"}, egress.Policy{}, `spec.config.maxLen: "lots" is not an integer`},
		{"bad url", map[string]any{"url": "http://a:6379", "stream": "s"}, egress.Policy{}, `spec.config: invalid plugin config: key "url": redis: invalid URL scheme: http`},
		{"bad db", map[string]any{"addrs": "a:6379", "stream": "s", "db": "x"}, egress.Policy{}, `key "db"`},
		{"stream a list", map[string]any{"addrs": "a:6379", "stream": []string{"s"}}, egress.Policy{}, "spec.config.stream: a list: want a single value"},
		{"host not allowed", map[string]any{"addrs": []string{"redis.example.com:6379", "10.0.0.1:6379"}, "stream": "s"}, egress.Policy{AllowedHosts: []string{"*.example.com"}},
			`spec.config.addrs: host "10.0.0.1" is not allowed by this server's egress policy`},
		{"url host not allowed", map[string]any{"url": "redis://10.0.0.1:6379", "stream": "s"}, egress.Policy{AllowedHosts: []string{"*.example.com"}},
			`spec.config.url: host "10.0.0.1" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := egress.New(context.Background(), &manifest.Egress{FQN: "fraud.events", Type: "redis-stream", Config: tt.cfg}, tt.policy)
			if !errors.Is(err, plugins.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want ErrInvalidConfig and %q", err, tt.want)
			}
		})
	}
	eg, err := egress.New(context.Background(), &manifest.Egress{FQN: "ns.e", Type: "redis-stream",
		Config: map[string]any{"addrs": "redis.example.com:6379", "stream": "s"}}, egress.Policy{AllowedHosts: []string{"*.example.com"}})
	if err != nil {
		t.Errorf("an allowed host: %v", err)
	} else {
		eg.Close()
	}
}
