package redis_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/internal/redistest"
	historylock "github.com/osprey-ml/osprey/plugins/historylock/redis"
)

const hang = 20 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newLock(t *testing.T, client goredis.UniversalClient, ttl time.Duration) *historylock.Lock {
	t.Helper()
	l, err := historylock.New(historylock.Config{Client: client, Prefix: "t:{" + t.Name() + "}", TTL: ttl, Poll: 10 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func client(t *testing.T, s *redistest.Server) goredis.UniversalClient {
	t.Helper()
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{s.Addr()}, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// lead calls Lead in the background; the lease arrives on the channel.
func lead(ctx context.Context, l *historylock.Lock) <-chan historian.Lease {
	got := make(chan historian.Lease, 1)
	go func() {
		if lease, err := l.Lead(ctx); err == nil {
			got <- lease
		}
	}()
	return got
}

func wait(t *testing.T, c <-chan historian.Lease, what string) historian.Lease {
	t.Helper()
	select {
	case l := <-c:
		return l
	case <-time.After(hang):
		t.Fatalf("timed out waiting for %s", what)
	}
	return historian.Lease{}
}

// TestOneLeaderAtATime: while one lock leads the other waits; a release hands the lease on
// with a larger fence at once.
func TestOneLeaderAtATime(t *testing.T) {
	c := client(t, redistest.Standalone(t))
	a, b := newLock(t, c, time.Second), newLock(t, c, time.Second)
	la := wait(t, lead(context.Background(), a), "a's lease")
	gb := lead(context.Background(), b)
	select {
	case <-gb:
		t.Fatal("b leads while a holds the lease")
	case <-time.After(1500 * time.Millisecond): // past the TTL: a renews
	}
	if la.Context.Err() != nil {
		t.Fatalf("a's lease ended while renewed: %v", context.Cause(la.Context))
	}
	la.Release()
	lb := wait(t, gb, "b's lease after a released")
	if lb.Fence <= la.Fence {
		t.Fatalf("fences %d then %d: want them to grow", la.Fence, lb.Fence)
	}
	if !lb.Until().After(time.Now()) {
		t.Fatal("a fresh lease's Until is in the past")
	}
	lb.Release()
}

// TestLeaderDies: a holder that stops renewing (its process died) is replaced once its
// lease expires.
func TestLeaderDies(t *testing.T) {
	srv := redistest.Standalone(t)
	ac := client(t, srv)
	a, b := newLock(t, ac, 300*time.Millisecond), newLock(t, client(t, srv), 300*time.Millisecond)
	actx, cancel := context.WithCancel(context.Background())
	la := wait(t, lead(actx, a), "a's lease")
	cancel() // Lead's context ending does not end the lease: it is still renewed
	time.Sleep(600 * time.Millisecond)
	if la.Context.Err() != nil {
		t.Fatalf("a's lease ended with Lead's context: %v", context.Cause(la.Context))
	}
	ac.Close() // a dies: its renewals fail, and it never releases
	lb := wait(t, lead(context.Background(), b), "b's lease after a died")
	if lb.Fence != la.Fence+1 {
		t.Fatalf("fence %d after %d", lb.Fence, la.Fence)
	}
	lb.Release()
}

// TestLeaseLost: a holder whose lease was taken from it (its key deleted and taken by
// another) and one that cannot reach Redis both see their lease's context end with
// ErrLostLead — the latter before its lease could have expired.
func TestLeaseLost(t *testing.T) {
	s := redistest.Standalone(t)
	c := client(t, s)
	a, b := newLock(t, c, 600*time.Millisecond), newLock(t, c, 600*time.Millisecond)
	la := wait(t, lead(context.Background(), a), "a's lease")
	if _, err := s.CLI("DEL", "t:{"+t.Name()+"}:lease"); err != nil {
		t.Fatal(err)
	}
	lb := wait(t, lead(context.Background(), b), "b's lease")
	select {
	case <-la.Context.Done():
	case <-time.After(hang):
		t.Fatal("a's lease did not end after b took it")
	}
	if !errors.Is(context.Cause(la.Context), historian.ErrLostLead) {
		t.Fatalf("a's lease ended with %v", context.Cause(la.Context))
	}
	la.Release() // must not release b's lease
	if lb.Context.Err() != nil {
		t.Fatal("a's release ended b's lease")
	}

	until := lb.Until()
	s.Stop()
	select {
	case <-lb.Context.Done():
	case <-time.After(hang):
		t.Fatal("b's lease did not end with Redis gone")
	}
	if !errors.Is(context.Cause(lb.Context), historian.ErrLostLead) {
		t.Fatalf("b's lease ended with %v", context.Cause(lb.Context))
	}
	if ended := time.Now(); ended.After(until.Add(600 * time.Millisecond)) {
		t.Logf("note: b's lease ended %v after its Until", ended.Sub(until))
	}
	lb.Release()
}

func TestConfigErrors(t *testing.T) {
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}})
	defer c.Close()
	for _, cfg := range []historylock.Config{
		{},
		{Client: c, TTL: time.Millisecond},
		{Client: c, TTL: time.Second, Margin: 2 * time.Second},
		{Client: c, Poll: -1},
	} {
		if _, err := historylock.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
