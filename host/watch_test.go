package host

import (
	"sync/atomic"
	"testing"
	"time"
)

// newTestWatch returns a watch whose stop counts into n.
func newTestWatch(t *testing.T, n *atomic.Int32) *watch {
	w := newWatch(time.Now(), func() { n.Add(1) })
	t.Cleanup(w.close)
	return w
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWatchStopsAtDeadline(t *testing.T) {
	var n atomic.Int32
	w := newTestWatch(t, &n)
	w.arm(time.Now().Add(10*time.Millisecond), nil)
	waitFor(t, "the stop", func() bool { return n.Load() == 1 })
	if !w.disarm() {
		t.Error("disarm did not report the stop")
	}
	// The next call is watched again.
	w.arm(time.Now().Add(10*time.Millisecond), nil)
	waitFor(t, "the second stop", func() bool { return n.Load() == 2 })
	if !w.disarm() {
		t.Error("disarm did not report the second stop")
	}
}

func TestWatchFinishedCallsAreNotStopped(t *testing.T) {
	var n atomic.Int32
	w := newTestWatch(t, &n)
	for range 1000 {
		w.arm(time.Now().Add(20*time.Millisecond), nil)
		if w.disarm() {
			t.Fatal("a call that finished in time was stopped")
		}
	}
	time.Sleep(50 * time.Millisecond) // the timer fires at an idle instance
	if n.Load() != 0 {
		t.Fatalf("stop ran %d times for calls that finished in time", n.Load())
	}
}

// An earlier deadline than the one the timer is set for resets it.
func TestWatchEarlierDeadline(t *testing.T) {
	var n atomic.Int32
	w := newTestWatch(t, &n)
	w.arm(time.Now().Add(time.Hour), nil)
	w.disarm()
	w.arm(time.Now().Add(10*time.Millisecond), nil)
	waitFor(t, "the stop", func() bool { return n.Load() == 1 })
	if !w.disarm() {
		t.Error("disarm did not report the stop")
	}
}

// A later deadline than the one the timer is set for is caught by the timer re-arming.
func TestWatchLaterDeadline(t *testing.T) {
	var n atomic.Int32
	w := newTestWatch(t, &n)
	w.arm(time.Now().Add(5*time.Millisecond), nil)
	w.disarm()
	start := time.Now()
	w.arm(start.Add(60*time.Millisecond), nil)
	time.Sleep(30 * time.Millisecond) // the first timer has fired by now, and re-armed
	if n.Load() != 0 {
		t.Fatal("stopped before the running call's deadline")
	}
	waitFor(t, "the stop", func() bool { return n.Load() == 1 })
	if time.Since(start) < 60*time.Millisecond {
		t.Error("stopped before the deadline")
	}
	if !w.disarm() {
		t.Error("disarm did not report the stop")
	}
}

// Calls armed while the timer fires, again and again, are all watched: a stream of short
// calls with deadlines just ahead, then one that overruns, which must be stopped.
func TestWatchArmRacesFire(t *testing.T) {
	var n atomic.Int32
	w := newTestWatch(t, &n)
	for i := range 2000 {
		w.arm(time.Now().Add(time.Duration(i%50)*time.Microsecond), nil)
		if w.disarm() { // the stop runs just after disarm can see it
			waitFor(t, "the stop disarm reported", func() bool { return n.Load() == 1 })
			n.Store(0)
		}
	}
	w.arm(time.Now().Add(time.Millisecond), nil)
	waitFor(t, "the stop of the overrunning call", func() bool { return n.Load() >= 1 })
}
