// Package notifiertest is the conformance suite every engine.Notifier passes: the in-process
// notifier and the Redis Streams one run the same cases.
//
// A provider's test calls Run with a Harness that creates fresh notifiers. Timeouts in the
// suite are generous bounds against hangs, never timing assertions.
package notifiertest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// Harness creates the notifiers under test.
type Harness struct {
	// New returns a fresh, empty notifier on which groups exist from the start
	// (nothing published before their first subscriber is lost to them). A notifier that
	// redelivers after a delay should be configured with a short one. The suite closes it.
	New func(t *testing.T, groups ...string) engine.Notifier
	// Held, when set, reports how many notifications n still holds after dropping the ones
	// every group has acknowledged. Cases about trimming are skipped without it.
	Held func(t *testing.T, n engine.Notifier) int
}

// hang bounds every wait of the suite.
const hang = 20 * time.Second

// Run runs the conformance cases as subtests of t.
func Run(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"DeclaredGroupsSeeEverythingInOrder", testDeclaredGroups},
		{"FieldsRoundTrip", testFieldsRoundTrip},
		{"OneDeliveryPerGroupAcrossSubscribers", testOneDeliveryPerGroup},
		{"ConcurrentPublishers", testConcurrentPublishers},
		{"FailedHandlerGetsItAgain", testFailedHandler},
		{"AcknowledgedIsReleased", testAcknowledgedIsReleased},
		{"DeleteGroupStopsSubscriber", testDeleteGroup},
		{"DeleteIdleGroupReleases", testDeleteIdleGroup},
		{"SubscribeEndsWithContext", testSubscribeEndsWithContext},
		{"Close", testClose},
		{"BatchesInOrderAcknowledgedOnDone", testBatchesInOrder},
		{"BatchFailedIsDeliveredAgain", testBatchFailed},
		{"BatchMaxPendingBounds", testBatchMaxPending},
		{"PublishBatchInOrder", testPublishBatch},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// Note returns the i-th test notification: a write of the int i to "t.x".
func Note(i int) engine.Notification {
	return engine.Notification{Kind: engine.NotifyWrite, FQN: "t.x", Value: engine.Int(int64(i))}
}

func newNotifier(t *testing.T, h Harness, groups ...string) engine.Notifier {
	t.Helper()
	n := h.New(t, groups...)
	t.Cleanup(func() { n.Close() })
	return n
}

func publish(t *testing.T, n engine.Notifier, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := n.Publish(context.Background(), Note(i)); err != nil {
			t.Fatalf("Publish(%d): %v", i, err)
		}
	}
}

// Collect subscribes to group until want notifications arrived (or until until, when set,
// returns true for one), then stops the subscription and returns the values received.
func Collect(t *testing.T, n engine.Notifier, group string, want int, until func(engine.Notification) bool) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	var mu sync.Mutex
	var got []int64
	done := make(chan struct{})
	var once sync.Once
	subErr := make(chan error, 1)
	go func() {
		subErr <- n.Subscribe(ctx, group, func(_ context.Context, x engine.Notification) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, x.Value.Int())
			if len(got) == want || until != nil && until(x) {
				once.Do(func() { close(done) })
			}
			return nil
		})
	}()
	select {
	case <-done:
	case err := <-subErr:
		t.Fatalf("group %s: Subscribe returned %v before %d notifications", group, err, want)
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("group %s: got %d notifications, want %d", group, len(got), want)
	}
	cancel()
	<-subErr // the last acknowledgement is in before we return
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got)
}

// eventually polls cond until it holds or the hang bound passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %s", what, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func heldIs(t *testing.T, h Harness, n engine.Notifier, want int) {
	t.Helper()
	eventually(t, fmt.Sprintf("notifications held, want %d", want), func() (bool, string) {
		got := h.Held(t, n)
		return got == want, fmt.Sprintf("%d", got)
	})
}

func testDeclaredGroups(t *testing.T, h Harness) {
	n := newNotifier(t, h, "historian", "audit")
	publish(t, n, 0, 10)
	for _, g := range []string{"historian", "audit"} {
		got := Collect(t, n, g, 10, nil)
		for i, v := range got {
			if v != int64(i) {
				t.Fatalf("group %s: got %v, want 0..9 in order", g, got)
			}
		}
	}
}

// testPublishBatch: a BatchPublisher's batches reach every group as if each notification
// was published on its own, in order, between the single publishes around them.
func testPublishBatch(t *testing.T, h Harness) {
	n := newNotifier(t, h, "historian")
	bp, ok := n.(engine.BatchPublisher)
	if !ok {
		t.Skipf("%T does not implement engine.BatchPublisher", n)
	}
	batch := func(from, to int) {
		t.Helper()
		var ns []engine.Notification
		for i := from; i < to; i++ {
			ns = append(ns, Note(i))
		}
		if err := bp.PublishBatch(context.Background(), ns); err != nil {
			t.Fatalf("PublishBatch(%d..%d): %v", from, to-1, err)
		}
	}
	publish(t, n, 0, 3)
	batch(3, 50)
	batch(50, 50) // empty
	publish(t, n, 50, 51)
	batch(51, 52) // one
	got := Collect(t, n, "historian", 52, nil)
	for i, v := range got {
		if v != int64(i) {
			t.Fatalf("got %v, want 0..51 in order", got)
		}
	}
}

func testFieldsRoundTrip(t *testing.T, h Harness) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	notes := []engine.Notification{
		{Kind: engine.NotifyWrite, Op: engine.Op(1), FQN: "a.b", EncodedKeys: "k\x00é", Value: engine.Float(math.Inf(-1)),
			Timestamp: ts, Outcome: engine.WriteApplied},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.Float(math.NaN()), Outcome: engine.WriteSuperseded},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.String("s\n\"x\"")},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.Bool(true)},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.Timestamp(ts)},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.IntList([]int64{-1, math.MaxInt64})},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.FloatList([]float64{0.5, math.Inf(1)})},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.StringList([]string{"", "x"})},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.BoolList([]bool{true, false})},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.TimestampList([]time.Time{ts})},
		{Kind: engine.NotifyWrite, FQN: "a.b", Value: engine.IntList([]int64{})},
		{Kind: engine.NotifyWrite, FQN: "a.b", Windowed: true, Bucket: -7, ActiveBucket: true, Timestamp: ts},
		{Kind: engine.NotifyCollect, FQN: "a.b", EncodedKeys: "k", Windowed: true, Bucket: 1 << 40},
	}
	n := newNotifier(t, h, "g")
	for _, x := range notes {
		if err := n.Publish(context.Background(), x); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	var got []engine.Notification
	err := n.Subscribe(ctx, "g", func(_ context.Context, x engine.Notification) error {
		got = append(got, x)
		if len(got) == len(notes) {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe = %v after %d of %d notifications", err, len(got), len(notes))
	}
	for i, want := range notes {
		g := got[i]
		if g.Kind != want.Kind || g.Op != want.Op || g.FQN != want.FQN || g.EncodedKeys != want.EncodedKeys ||
			!g.Timestamp.Equal(want.Timestamp) || g.Outcome != want.Outcome || g.Windowed != want.Windowed ||
			g.Bucket != want.Bucket || g.ActiveBucket != want.ActiveBucket || !sameValue(g.Value, want.Value) {
			t.Errorf("notification %d:\n got %+v\nwant %+v", i, g, want)
		}
	}
}

// sameValue is Value.Equal, with a NaN equal to a NaN.
func sameValue(a, b engine.Value) bool {
	if a.Kind() == engine.KindFloat && b.Kind() == engine.KindFloat && math.IsNaN(a.Float()) {
		return math.IsNaN(b.Float())
	}
	return a.Kind() == b.Kind() && a.Equal(b)
}

func testOneDeliveryPerGroup(t *testing.T, h Harness) {
	const total = 500
	n := newNotifier(t, h, "g")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var count atomic.Int64
	seen := make([]atomic.Int32, total)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			_ = n.Subscribe(ctx, "g", func(_ context.Context, x engine.Notification) error {
				seen[x.Value.Int()].Add(1)
				count.Add(1)
				return nil
			})
		})
	}
	publish(t, n, 0, total)
	eventually(t, "delivered", func() (bool, string) {
		c := count.Load()
		return c >= total, fmt.Sprintf("%d of %d", c, total)
	})
	cancel()
	wg.Wait()
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("notification %d delivered %d times", i, c)
		}
	}
}

func testConcurrentPublishers(t *testing.T, h Harness) {
	const writers, each = 4, 50
	n := newNotifier(t, h, "g")
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := n.Publish(context.Background(), Note(w*each+i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := Collect(t, n, "g", writers*each, nil)
	slices.Sort(got)
	for i, v := range got {
		if v != int64(i) {
			t.Fatalf("got %v, want 0..%d once each", got, writers*each-1)
		}
	}
}

func testFailedHandler(t *testing.T, h Harness) {
	n := newNotifier(t, h, "g")
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	publish(t, n, 1, 2)
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
		t.Fatalf("attempts = %d, err = %v; want 3 attempts and Canceled", attempts, err)
	}
	if h.Held != nil {
		heldIs(t, h, n, 0)
	}
}

func testAcknowledgedIsReleased(t *testing.T, h Harness) {
	if h.Held == nil {
		t.Skip("the harness cannot count held notifications")
	}
	n := newNotifier(t, h, "a", "b")
	publish(t, n, 0, 6)
	Collect(t, n, "a", 6, nil)
	heldIs(t, h, n, 6) // b has seen nothing
	Collect(t, n, "b", 6, nil)
	heldIs(t, h, n, 0)
}

// testDeleteGroup: a running subscriber of a deleted group returns ErrGroupDeleted, deleting
// an unknown group succeeds, and a new Subscribe to the name starts a new group.
func testDeleteGroup(t *testing.T, h Harness) {
	n := newNotifier(t, h, "stuck")
	ctx := context.Background()
	publish(t, n, 0, 2)
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
	select {
	case <-entered:
	case err := <-subErr:
		t.Fatalf("Subscribe returned %v before its first notification", err)
	case <-time.After(hang):
		t.Fatal("no notification delivered")
	}
	if err := n.DeleteGroup(ctx, "stuck"); err != nil {
		t.Fatal(err)
	}
	close(release)
	select {
	case err := <-subErr:
		if !errors.Is(err, engine.ErrGroupDeleted) {
			t.Fatalf("Subscribe of a deleted group = %v, want ErrGroupDeleted", err)
		}
	case <-time.After(hang):
		t.Fatal("the subscriber of a deleted group did not return")
	}
	if err := n.DeleteGroup(ctx, "no such group"); err != nil {
		t.Errorf("DeleteGroup of an unknown group: %v", err)
	}
	if err := n.DeleteGroup(ctx, "stuck"); err != nil {
		t.Errorf("DeleteGroup twice: %v", err)
	}
	publish(t, n, 100, 101)
	Collect(t, n, "stuck", -1, func(x engine.Notification) bool { return x.Value.Int() == 100 })
}

func testDeleteIdleGroup(t *testing.T, h Harness) {
	if h.Held == nil {
		t.Skip("the harness cannot count held notifications")
	}
	n := newNotifier(t, h, "a", "b")
	ctx := context.Background()
	publish(t, n, 0, 5)
	Collect(t, n, "a", 5, nil)
	heldIs(t, h, n, 5)
	if err := n.DeleteGroup(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	heldIs(t, h, n, 0)
}

func testSubscribeEndsWithContext(t *testing.T, h Harness) {
	n := newNotifier(t, h, "g")
	ctx, cancel := context.WithCancel(context.Background())
	subErr := make(chan error, 1)
	go func() {
		subErr <- n.Subscribe(ctx, "g", func(context.Context, engine.Notification) error { return nil })
	}()
	cancel()
	select {
	case err := <-subErr:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe after cancel = %v, want Canceled", err)
		}
	case <-time.After(hang):
		t.Fatal("Subscribe did not return after its context ended")
	}
	if err := n.Subscribe(ctx, "", nil); err == nil {
		t.Error("Subscribe with an empty group name succeeded")
	}
}

func testClose(t *testing.T, h Harness) {
	n := newNotifier(t, h, "g")
	ctx := context.Background()
	subErr := make(chan error, 1)
	started := make(chan struct{})
	publish(t, n, 0, 1)
	go func() {
		var once sync.Once
		subErr <- n.Subscribe(ctx, "g", func(context.Context, engine.Notification) error {
			once.Do(func() { close(started) })
			return nil
		})
	}()
	select {
	case <-started:
	case <-time.After(hang):
		t.Fatal("no notification delivered")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-subErr:
		if err == nil {
			t.Fatal("Subscribe returned nil after Close")
		}
	case <-time.After(hang):
		t.Fatal("Subscribe did not return after Close")
	}
	if err := n.Publish(ctx, Note(1)); err == nil {
		t.Error("Publish after Close succeeded")
	}
	if err := n.Subscribe(ctx, "g", func(context.Context, engine.Notification) error { return nil }); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
}

// batchSubscriber returns n as an engine.BatchSubscriber, skipping the test when it is not.
func batchSubscriber(t *testing.T, n engine.Notifier) engine.BatchSubscriber {
	t.Helper()
	b, ok := n.(engine.BatchSubscriber)
	if !ok {
		t.Skipf("%T is no engine.BatchSubscriber", n)
	}
	return b
}

// batchDelivery is one batch received by subscribeBatches.
type batchDelivery struct {
	values []int64
	done   func(error)
}

// subscribeBatches runs SubscribeBatches of group in the background, sending each batch
// received on the returned channel; stop ends it and waits for it.
func subscribeBatches(t *testing.T, b engine.BatchSubscriber, group string, opts engine.BatchOptions) (<-chan batchDelivery, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan batchDelivery, 1024)
	errc := make(chan error, 1)
	go func() {
		errc <- b.SubscribeBatches(ctx, group, opts, func(_ context.Context, batch []engine.Notification, done func(error)) {
			d := batchDelivery{done: done}
			for _, n := range batch {
				d.values = append(d.values, n.Value.Int())
			}
			got <- d
		})
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("SubscribeBatches: %v", err)
				}
			case <-time.After(hang):
				t.Errorf("SubscribeBatches did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return got, stop
}

// receive takes batches until want values have arrived.
func receive(t *testing.T, got <-chan batchDelivery, want int) []batchDelivery {
	t.Helper()
	var out []batchDelivery
	n := 0
	for n < want {
		select {
		case d := <-got:
			out = append(out, d)
			n += len(d.values)
		case <-time.After(hang):
			t.Fatalf("received %d of %d notifications", n, want)
		}
	}
	return out
}

func testBatchesInOrder(t *testing.T, h Harness) {
	n := newNotifier(t, h, "g")
	b := batchSubscriber(t, n)
	publish(t, n, 0, 100)
	got, stop := subscribeBatches(t, b, "g", engine.BatchOptions{MaxBatch: 16})
	batches := receive(t, got, 100)
	var all []int64
	for _, d := range batches {
		if len(d.values) == 0 || len(d.values) > 16 {
			t.Errorf("a batch of %d, want 1 to 16", len(d.values))
		}
		all = append(all, d.values...)
	}
	want := make([]int64, 100)
	for i := range want {
		want[i] = int64(i)
	}
	if !slices.Equal(all, want) {
		t.Fatalf("received %v, want 0…99 in order", all)
	}
	if h.Held != nil {
		if held := h.Held(t, n); held != 100 {
			t.Errorf("before done: %d held, want all 100", held)
		}
	}
	for _, d := range batches {
		d.done(nil)
		d.done(nil) // a second call is ignored
	}
	stop()
	if h.Held != nil {
		waitHeld(t, h, n, 0)
	}
	// Acknowledged batches are not delivered again to a new subscription of the group.
	publish(t, n, 100, 101)
	got, _ = subscribeBatches(t, b, "g", engine.BatchOptions{})
	if d := receive(t, got, 1); len(d) != 1 || d[0].values[0] != 100 {
		t.Fatalf("after the acknowledgements: %v, want only 100", d[0].values)
	}
}

func testBatchFailed(t *testing.T, h Harness) {
	n := newNotifier(t, h, "g")
	b := batchSubscriber(t, n)
	publish(t, n, 0, 5)
	got, _ := subscribeBatches(t, b, "g", engine.BatchOptions{MaxBatch: 5})
	first := receive(t, got, 5)
	for _, d := range first {
		d.done(errors.New("storage down"))
	}
	again := receive(t, got, 5)
	var vals []int64
	for _, d := range again {
		vals = append(vals, d.values...)
		d.done(nil)
	}
	if !slices.Equal(vals, []int64{0, 1, 2, 3, 4}) {
		t.Fatalf("delivered again: %v, want 0…4", vals)
	}
	if h.Held != nil {
		waitHeld(t, h, n, 0)
	}
}

func testBatchMaxPending(t *testing.T, h Harness) {
	n := newNotifier(t, h, "g")
	b := batchSubscriber(t, n)
	publish(t, n, 0, 40)
	got, _ := subscribeBatches(t, b, "g", engine.BatchOptions{MaxBatch: 4, MaxPending: 10})
	held := receive(t, got, 8)
	count := 0
	for _, d := range held {
		count += len(d.values)
	}
	// Whatever else arrives before a done is within the bound.
	for extra := true; extra; {
		select {
		case d := <-got:
			held = append(held, d)
			count += len(d.values)
		case <-time.After(50 * time.Millisecond):
			extra = false
		}
	}
	if count > 10 {
		t.Fatalf("%d handed out without a done, more than MaxPending (10)", count)
	}
	for _, d := range held {
		d.done(nil)
	}
	for count < 40 { // the rest, each batch done as it comes
		d := receive(t, got, 1)[0]
		count += len(d.values)
		d.done(nil)
	}
}

// waitHeld waits until n holds want notifications.
func waitHeld(t *testing.T, h Harness, n engine.Notifier, want int) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for {
		got := h.Held(t, n)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications held, want %d", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
