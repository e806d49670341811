package redis_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/engine/notifiertest"
	"github.com/osprey-ml/osprey/internal/redistest"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/notifier/redis"
)

// hang bounds the waits of these tests (against hangs, not timing assertions).
const hang = 20 * time.Second

var prefixes atomic.Int64

// fresh returns a prefix no other notifier of the test run uses.
func fresh() string { return fmt.Sprintf("test%d", prefixes.Add(1)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fast are the options of the tests: quick retries, short blocks, a claim idle time long
// enough that a live consumer's entries are not taken over, no background trimming.
func fast(extra ...redis.Option) []redis.Option {
	return append([]redis.Option{redis.WithPrefix(fresh()), redis.WithBlock(20 * time.Millisecond),
		redis.WithRetryDelay(time.Millisecond), redis.WithClaimIdle(10 * time.Second),
		redis.WithTrimInterval(time.Hour), redis.WithLogger(quiet)}, extra...)
}

func newNotifier(t *testing.T, client goredis.UniversalClient, opts ...redis.Option) *redis.Notifier {
	t.Helper()
	n, err := redis.New(context.Background(), client, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func held(t *testing.T, n engine.Notifier) int {
	t.Helper()
	r := n.(*redis.Notifier)
	if _, err := r.Trim(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := r.Len(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(l)
}

func standaloneClient(t *testing.T, s *redistest.Server) goredis.UniversalClient {
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: []string{s.Addr()}})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	s := redistest.Standalone(t)
	client := standaloneClient(t, s)
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			notifiertest.Run(t, notifiertest.Harness{
				New: func(t *testing.T, groups ...string) engine.Notifier {
					return newNotifier(t, client, fast(redis.WithShards(shards), redis.WithGroups(groups...))...)
				},
				Held: held,
			})
		})
	}
}

func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-master Cluster")
	}
	c := redistest.NewCluster(t, 3)
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: c.Addrs(), IsClusterMode: true})
	t.Cleanup(func() { client.Close() })
	notifiertest.Run(t, notifiertest.Harness{
		New: func(t *testing.T, groups ...string) engine.Notifier {
			return newNotifier(t, client, fast(redis.WithShards(3), redis.WithGroups(groups...))...)
		},
		Held: held,
	})
}

// TestConsumerKilledMidStream: a consumer in another process takes entries and is killed
// (SIGKILL) in its handler without acknowledging them; after the claim idle time another
// subscriber of the group gets every one of them.
func TestConsumerKilledMidStream(t *testing.T) {
	s := redistest.Standalone(t)
	prefix := fresh()
	opts := []redis.Option{redis.WithPrefix(prefix), redis.WithGroups("g"), redis.WithBlock(20 * time.Millisecond),
		redis.WithClaimIdle(200 * time.Millisecond), redis.WithTrimInterval(time.Hour), redis.WithLogger(quiet)}
	survivor := newNotifier(t, standaloneClient(t, s), opts...)
	for i := range 10 {
		if err := survivor.Publish(context.Background(), notifiertest.Note(i)); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDoomedConsumer$")
	cmd.Env = append(os.Environ(), "DOOMED_REDIS="+s.Addr(), "DOOMED_PREFIX="+prefix)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "entered") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the doomed consumer said %q, %v", line, err)
	}
	cmd.Process.Kill() // SIGKILL, in its handler: nothing acknowledged
	cmd.Wait()

	b, err := survivor.Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1 || b[0].Pending == 0 {
		t.Fatalf("backlog %+v: want the killed consumer's entries pending", b)
	}
	got := notifiertest.Collect(t, survivor, "g", 10, nil)
	slices.Sort(got)
	if !slices.Equal(got, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("survivor got %v, want 0..9", got)
	}
	if l := held(t, survivor); l != 0 {
		t.Errorf("%d entries held after the survivor acknowledged all", l)
	}
}

// TestDoomedConsumer is the killed consumer of TestConsumerKilledMidStream, run in a child
// process; it does nothing when run by itself.
func TestDoomedConsumer(t *testing.T) {
	addr := os.Getenv("DOOMED_REDIS")
	if addr == "" {
		t.Skip("the child process of TestConsumerKilledMidStream")
	}
	client := goredis.NewClient(&goredis.Options{Addr: addr})
	n, err := redis.New(context.Background(), client, redis.WithPrefix(os.Getenv("DOOMED_PREFIX")),
		redis.WithBlock(20*time.Millisecond), redis.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	_ = n.Subscribe(context.Background(), "g", func(_ context.Context, x engine.Notification) error {
		fmt.Printf("entered %d\n", x.Value.Int())
		select {} // until killed
	})
}

// TestTrimKeepsWhatASlowGroupNeeds: trimming never removes an entry a group has not
// acknowledged (neither undelivered nor pending), however small MaxLen is.
func TestTrimKeepsWhatASlowGroupNeeds(t *testing.T) {
	s := redistest.Standalone(t)
	n := newNotifier(t, standaloneClient(t, s), fast(redis.WithGroups("fast", "slow"), redis.WithMaxLen(2), redis.WithBatch(1),
		// 5, left pending by the first slow consumer, is claimed by the second.
		redis.WithClaimIdle(100*time.Millisecond))...)
	ctx := context.Background()
	for i := range 20 {
		if err := n.Publish(ctx, notifiertest.Note(i)); err != nil {
			t.Fatal(err)
		}
	}
	notifiertest.Collect(t, n, "fast", 20, nil)
	if l := held(t, n); l != 20 {
		t.Fatalf("held %d, want 20 (slow has seen nothing)", l)
	}
	// slow acknowledges 0..4 and fails on 5: 5 stays pending.
	sctx, cancel := context.WithTimeout(ctx, hang)
	defer cancel()
	err := n.Subscribe(sctx, "slow", func(_ context.Context, x engine.Notification) error {
		if x.Value.Int() == 5 {
			cancel()
			return errors.New("slow sink")
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("slow Subscribe = %v", err)
	}
	if l := held(t, n); l != 15 {
		t.Fatalf("held %d, want 15 (5..19: 5 pending, the rest undelivered)", l)
	}
	b, err := n.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []redis.GroupBacklog{{Group: "fast", Lag: 0, Pending: 0}, {Group: "slow", Lag: 14, Pending: 1}}
	for i := range b {
		b[i].Consumers = 0
	}
	if !slices.Equal(b, want) {
		t.Errorf("Backlog = %+v, want %+v", b, want)
	}
	got := notifiertest.Collect(t, n, "slow", 15, nil)
	slices.Sort(got)
	if got[0] != 5 || got[14] != 19 {
		t.Fatalf("slow got %v, want 5..19", got)
	}
	if l := held(t, n); l != 0 {
		t.Errorf("held %d after both groups acknowledged everything", l)
	}
}

// TestWithoutGroupsKeepsNewest: a stream no group reads keeps its newest MaxLen entries; a
// group that comes late starts at the oldest of them.
func TestWithoutGroupsKeepsNewest(t *testing.T) {
	s := redistest.Standalone(t)
	n := newNotifier(t, standaloneClient(t, s), fast(redis.WithMaxLen(3))...)
	for i := range 10 {
		if err := n.Publish(context.Background(), notifiertest.Note(i)); err != nil {
			t.Fatal(err)
		}
	}
	if l := held(t, n); l != 3 {
		t.Fatalf("held %d, want 3", l)
	}
	if got := notifiertest.Collect(t, n, "late", 3, nil); !slices.Equal(got, []int64{7, 8, 9}) {
		t.Fatalf("late group got %v, want 7 8 9", got)
	}
}

// TestBackgroundTrimmer: the trimmer runs by itself.
func TestBackgroundTrimmer(t *testing.T) {
	s := redistest.Standalone(t)
	n := newNotifier(t, standaloneClient(t, s), fast(redis.WithGroups("g"), redis.WithTrimInterval(10*time.Millisecond))...)
	for i := range 5 {
		if err := n.Publish(context.Background(), notifiertest.Note(i)); err != nil {
			t.Fatal(err)
		}
	}
	notifiertest.Collect(t, n, "g", 5, nil)
	deadline := time.Now().Add(hang)
	for {
		l, err := n.Len(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if l == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d entries", l)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// unavailable mirrors the server's mapping of errors to Unavailable (server/errors.go).
func unavailable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed)
}

// TestRedisRestart: while Redis is down Publish fails fast with a network error (Unavailable
// to clients); when it is back, Publish and a running Subscribe resume by themselves.
func TestRedisRestart(t *testing.T) {
	s := redistest.Standalone(t)
	nt, err := plugins.NewNotifier(context.Background(), "redis", plugins.Config{
		"addrs": s.Addr(), "timeout": "300ms", "block": "20ms", "retry-delay": "1ms", "groups": "g",
		"prefix": fresh(), "trim-interval": "50ms"})
	if err != nil {
		t.Fatal(err)
	}
	defer nt.Close()
	n := nt.(*redis.Notifier)
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	got := make(chan int64, 100)
	subErr := make(chan error, 1)
	go func() {
		subErr <- n.Subscribe(ctx, "g", func(_ context.Context, x engine.Notification) error {
			got <- x.Value.Int()
			return nil
		})
	}()
	wait := func(want int64) {
		t.Helper()
		for {
			select {
			case v := <-got:
				if v == want {
					return
				}
			case err := <-subErr:
				t.Fatalf("Subscribe returned %v", err)
			case <-ctx.Done():
				t.Fatalf("notification %d never arrived", want)
			}
		}
	}
	if err := n.Publish(ctx, notifiertest.Note(1)); err != nil {
		t.Fatal(err)
	}
	wait(1)

	s.Stop()
	err = n.Publish(ctx, notifiertest.Note(2))
	if err == nil || !unavailable(err) {
		t.Fatalf("Publish with Redis down = %v, want a network error", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Publish with Redis down did not fail before the test's bound")
	}

	s.Start() // empty: the test server does not persist
	for {
		err := n.Publish(ctx, notifiertest.Note(3))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Publish never resumed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wait(3)
}

func TestConfig(t *testing.T) {
	s := redistest.Standalone(t)
	tests := []struct {
		cfg     plugins.Config
		wantErr bool
	}{
		{plugins.Config{"addrs": s.Addr()}, false},
		{plugins.Config{"url": "redis://" + s.Addr() + "/2", "prefix": "p", "shards": "4", "max-len": "10",
			"claim-idle": "1m", "block": "2s", "retry-delay": "0s", "trim-interval": "1s", "backlog-warn": "5",
			"batch": "8", "groups": "historian;audit", "timeout": "2s", "db": "1", "tls": "false"}, false},
		{plugins.Config{"addrs": s.Addr(), "url": "redis://" + s.Addr()}, true},
		{plugins.Config{"url": "http://x"}, true},
		{plugins.Config{"addrs": s.Addr(), "shards": "0"}, true},
		{plugins.Config{"addrs": s.Addr(), "claim-idle": "0s"}, true},
		{plugins.Config{"addrs": s.Addr(), "prefix": "a{b}"}, true},
		{plugins.Config{"addrs": s.Addr(), "colour": "blue"}, true},
		{plugins.Config{"addrs": s.Addr(), "db": "x"}, true},
		{plugins.Config{"addrs": "127.0.0.1:1", "timeout": "200ms"}, true}, // nobody listens
	}
	for _, tt := range tests {
		n, err := plugins.NewNotifier(context.Background(), "redis", tt.cfg)
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: err = %v, wantErr %v", tt.cfg, err, tt.wantErr)
		}
		if err == nil {
			if err := n.Close(); err != nil {
				t.Errorf("%v: Close: %v", tt.cfg, err)
			}
		}
	}
}

// TestBacklogIsLogged: the trimmer warns about a group whose backlog passes the level.
func TestBacklogIsLogged(t *testing.T) {
	s := redistest.Standalone(t)
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	n := newNotifier(t, standaloneClient(t, s), fast(redis.WithGroups("laggard"), redis.WithBacklogWarn(2), redis.WithLogger(log))...)
	for i := range 3 {
		if err := n.Publish(context.Background(), notifiertest.Note(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Trim(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "group falls behind") || !strings.Contains(out, "group=laggard") || !strings.Contains(out, "lag=3") {
		t.Fatalf("log lacks the backlog warning:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestStreamNames pins the documented key names (docs/redis.md, "Notifier").
func TestStreamNames(t *testing.T) {
	s := redistest.Standalone(t)
	n := newNotifier(t, standaloneClient(t, s), redis.WithShards(2), redis.WithGroups("historian"), redis.WithLogger(quiet))
	if got := []string{n.Stream(0), n.Stream(1)}; !slices.Equal(got, []string{"osprey:notify:{0}", "osprey:notify:{1}"}) {
		t.Fatalf("streams %v", got)
	}
	out, err := s.CLI("xinfo", "groups", "osprey:notify:{1}")
	if err != nil || !containsLine(out, "historian") {
		t.Fatalf("XINFO GROUPS osprey:notify:{1}: %v\n%s", err, out)
	}
}

func containsLine(out, want string) bool {
	return slices.Contains(strings.Split(out, "\n"), want)
}

// TestBatchesLeftByAStoppedSubscriber: batches handed out and never done stay pending in
// Redis; the group's next subscriber claims them after the claim idle time, and the first
// subscriber's own claims never hand them to it twice while it holds them.
func TestBatchesLeftByAStoppedSubscriber(t *testing.T) {
	s := redistest.Standalone(t)
	opts := []redis.Option{redis.WithPrefix(fresh()), redis.WithGroups("g"), redis.WithBlock(20 * time.Millisecond),
		redis.WithClaimIdle(100 * time.Millisecond), redis.WithTrimInterval(time.Hour), redis.WithLogger(quiet)}
	n := newNotifier(t, standaloneClient(t, s), opts...)
	for i := range 10 {
		if err := n.Publish(context.Background(), notifiertest.Note(i)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	first := map[int64]int{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- n.SubscribeBatches(ctx, "g", engine.BatchOptions{}, func(_ context.Context, b []engine.Notification, _ func(error)) {
			mu.Lock()
			defer mu.Unlock()
			for _, x := range b {
				first[x.Value.Int()]++
			}
		})
	}()
	deadline := time.Now().Add(hang)
	for {
		mu.Lock()
		got := len(first)
		mu.Unlock()
		if got == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first subscriber got %d of 10", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // three claim idle times: its own claims see them
	cancel()
	<-done
	for v, k := range first {
		if k != 1 {
			t.Fatalf("the first subscriber got %d %d times while it held it", v, k)
		}
	}
	got := notifiertest.Collect(t, n, "g", 10, nil)
	slices.Sort(got)
	if !slices.Equal(got, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("the next subscriber got %v, want 0..9", got)
	}
}

// TestLeftConsumersSwept: a consumer a subscription left behind (nothing pending, idle) is
// removed when the next subscriber joins.
func TestLeftConsumersSwept(t *testing.T) {
	s := redistest.Standalone(t)
	client := standaloneClient(t, s)
	prefix := fresh()
	n := newNotifier(t, client, redis.WithPrefix(prefix), redis.WithGroups("g"), redis.WithBlock(20*time.Millisecond),
		redis.WithClaimIdle(50*time.Millisecond), redis.WithTrimInterval(time.Hour), redis.WithLogger(quiet))
	stream := n.Stream(0)
	if err := client.XGroupCreateConsumer(context.Background(), stream, "g", "left-behind").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // past ten block times
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Subscribe(ctx, "g", func(context.Context, engine.Notification) error { return nil }) }()
	deadline := time.Now().Add(hang)
	for {
		cs, err := client.XInfoConsumers(context.Background(), stream, "g").Result()
		if err != nil {
			t.Fatal(err)
		}
		left := false
		for _, c := range cs {
			left = left || c.Name == "left-behind"
		}
		if !left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the left consumer is still in the group: %+v", cs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
