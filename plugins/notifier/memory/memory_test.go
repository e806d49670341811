package memory_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/notifier/memory"
)

func note(i int) engine.Notification {
	return engine.Notification{Kind: engine.NotifyWrite, FQN: "t.x", Value: engine.Int(int64(i))}
}

func mustNew(t *testing.T, opts ...memory.Option) *memory.Notifier {
	t.Helper()
	n, err := memory.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// collect subscribes to group until want notifications arrived, and returns their values.
func collect(t *testing.T, n *memory.Notifier, group string, want int) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []int64
	done := make(chan struct{})
	go func() {
		_ = n.Subscribe(ctx, group, func(_ context.Context, x engine.Notification) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, x.Value.Int())
			if len(got) == want {
				close(done)
			}
			return nil
		})
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("group %s: got %d notifications, want %d", group, len(got), want)
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	return got
}

func TestDeclaredGroupSeesWhatCameBeforeIt(t *testing.T) {
	n := mustNew(t, memory.WithGroups("historian", "audit"))
	for i := range 10 {
		if err := n.Publish(context.Background(), note(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []string{"historian", "audit"} {
		got := collect(t, n, g, 10)
		for i, v := range got {
			if v != int64(i) {
				t.Fatalf("group %s: got %v, want 0..9 in order", g, got)
			}
		}
	}
	// The last acknowledgement lands just after its handler returns.
	deadline := time.Now().Add(5 * time.Second)
	for n.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if l := n.Len(); l != 0 {
		t.Fatalf("log holds %d after every group acknowledged", l)
	}
}

func TestOneDeliveryPerGroupAcrossSubscribers(t *testing.T) {
	n := mustNew(t, memory.WithGroups("g"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var count atomic.Int64
	seen := make([]atomic.Int32, 500)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = n.Subscribe(ctx, "g", func(_ context.Context, x engine.Notification) error {
				seen[x.Value.Int()].Add(1)
				count.Add(1)
				return nil
			})
		}()
	}
	for i := range 500 {
		if err := n.Publish(ctx, note(i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for count.Load() < 500 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	wg.Wait()
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("notification %d delivered %d times", i, c)
		}
	}
}

func TestFailedHandlerGetsItAgain(t *testing.T) {
	n := mustNew(t, memory.WithGroups("g"), memory.WithRetryDelay(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.Publish(ctx, note(1))
	attempts := 0
	err := n.Subscribe(ctx, "g", func(context.Context, engine.Notification) error {
		attempts++
		if attempts < 3 {
			return errors.New("sink down")
		}
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || attempts != 3 {
		t.Fatalf("attempts = %d, err = %v", attempts, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n.Len() != 0 {
		t.Fatalf("acknowledged notification still held")
	}
}

func TestBackPressureInsteadOfLoss(t *testing.T) {
	n := mustNew(t, memory.WithCapacity(2), memory.WithGroups("g"))
	bg := context.Background()
	_ = n.Publish(bg, note(0))
	_ = n.Publish(bg, note(1))
	ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
	defer cancel()
	if err := n.Publish(ctx, note(2)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish into a full log: err = %v, want DeadlineExceeded", err)
	}
	published := make(chan error, 1)
	go func() { published <- n.Publish(bg, note(2)) }()
	got := collect(t, n, "g", 3)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2] != 2 {
		t.Fatalf("got %v", got)
	}
}

func TestWithoutGroupsKeepsNewest(t *testing.T) {
	n := mustNew(t, memory.WithCapacity(3))
	for i := range 10 {
		if err := n.Publish(context.Background(), note(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := collect(t, n, "late", 3); got[0] != 7 || got[2] != 9 {
		t.Fatalf("late group got %v, want 7 8 9", got)
	}
}

func TestCloseAndConfig(t *testing.T) {
	n := mustNew(t)
	n.Close()
	if err := n.Publish(context.Background(), note(0)); !errors.Is(err, memory.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if err := n.Subscribe(context.Background(), "g", nil); !errors.Is(err, memory.ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
	tests := []struct {
		cfg     plugins.Config
		wantErr bool
	}{
		{plugins.Config{}, false},
		{plugins.Config{"capacity": "10", "groups": "historian,watch", "retry_delay": "1s"}, false},
		{plugins.Config{"capacity": "0"}, true},
		{plugins.Config{"capacity": "x"}, true},
		{plugins.Config{"colour": "blue"}, true},
	}
	for _, tt := range tests {
		nt, err := plugins.NewNotifier(context.Background(), "memory", tt.cfg)
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: err = %v, wantErr %v", tt.cfg, err, tt.wantErr)
		}
		if nt != nil {
			nt.Close()
		}
	}
}

// TestDeleteGroup: a deleted group stops holding the log back, its running subscriber
// returns engine.ErrGroupDeleted, and a new Subscribe to the name starts a new group.
func TestDeleteGroup(t *testing.T) {
	n := mustNew(t, memory.WithCapacity(2), memory.WithGroups("stuck"))
	ctx := context.Background()
	for i := range 2 {
		if err := n.Publish(ctx, note(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The log is full of notifications "stuck" has not seen: Publish waits.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := n.Publish(short, note(2)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish into a full log = %v, want it to wait", err)
	}

	// A subscriber of the group, blocked in its handler, is told the group is gone.
	entered, release := make(chan struct{}), make(chan struct{})
	subErr := make(chan error, 1)
	go func() {
		var once sync.Once
		subErr <- n.Subscribe(ctx, "stuck", func(context.Context, engine.Notification) error {
			once.Do(func() { close(entered) })
			<-release
			return nil
		})
	}()
	<-entered
	if err := n.DeleteGroup(ctx, "stuck"); err != nil {
		t.Fatal(err)
	}
	close(release)
	select {
	case err := <-subErr:
		if !errors.Is(err, engine.ErrGroupDeleted) {
			t.Fatalf("Subscribe of a deleted group = %v, want ErrGroupDeleted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the subscriber of a deleted group did not return")
	}

	// Nothing holds the log back now.
	if err := n.Publish(short, note(2)); err != nil {
		t.Fatalf("Publish after the group was deleted: %v", err)
	}
	if err := n.DeleteGroup(ctx, "no such group"); err != nil {
		t.Errorf("DeleteGroup of an unknown group: %v", err)
	}
	// A new group under the old name starts at the oldest notification still in the log.
	if got := collect(t, n, "stuck", 2); len(got) != 2 {
		t.Errorf("the new group got %v", got)
	}
}

// TestDeleteIdleGroup: deleting a group with no subscriber running trims what it held.
func TestDeleteIdleGroup(t *testing.T) {
	n := mustNew(t, memory.WithCapacity(8), memory.WithGroups("a", "b"))
	ctx := context.Background()
	for i := range 5 {
		if err := n.Publish(ctx, note(i)); err != nil {
			t.Fatal(err)
		}
	}
	collect(t, n, "a", 5)
	if got := n.Len(); got != 5 {
		t.Fatalf("Len = %d while b has seen nothing, want 5", got)
	}
	if err := n.DeleteGroup(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := n.Len(); got != 0 {
		t.Errorf("Len = %d after b was deleted, want 0", got)
	}
}
