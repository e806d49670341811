package host

import (
	"sync"
	"sync/atomic"
	"time"
)

// watch stops an instance's guest when a call's deadline passes or its context ends (the
// instrumented stop mode): its timer sets the instance's stop global.
//
// Arming is lazy. A call stores its deadline in due and resets the timer only when the
// timer is not due to fire by then; when the timer fires, it stops the guest if the running
// call's deadline has passed and otherwise re-arms itself for that deadline (or goes idle).
// Calls with a steady timeout have rising deadlines, so a busy instance resets its timer
// about once per timeout instead of once per call: Reset and Stop of a time.Timer cost
// ~100 ns a call, 5 % of a Go guest's whole call (BENCHMARKS.md), where storing a deadline
// costs a few. The price is a timer that may fire once more than needed, at an idle instance.
//
// arm and disarm are called by the goroutine running the instance's call; fire runs on the
// timer's goroutine. due is 0 when no call runs, the deadline otherwise (nanoseconds since
// epoch, at least 1), and stopped once fire has stopped the call.
type watch struct {
	epoch time.Time // monotonic base of due and fireAt
	stop  func()    // sets the stop global

	due    atomic.Int64
	fireAt atomic.Int64 // when the timer fires, nanoseconds since epoch; 0 when it will not
	done   atomic.Value // the running call's ctx.Done(), a <-chan struct{}
	// lastDone is what done last got, read and written only by arm's goroutine: a call
	// with the same context as the last stores nothing.
	lastDone <-chan struct{}

	mu    sync.Mutex // serialises resets of the timer
	timer *time.Timer
}

const stopped = -1

// cancelPoll is how often a running call's context is checked for cancellation.
const cancelPoll = 25 * time.Millisecond

func newWatch(epoch time.Time, stop func()) *watch {
	w := &watch{epoch: epoch, stop: stop}
	w.timer = time.AfterFunc(time.Hour, w.fire)
	w.timer.Stop()
	return w
}

// arm watches a call with the given deadline and done channel (the call's ctx.Done()), and
// returns the deadline in nanoseconds since the epoch.
func (w *watch) arm(deadline time.Time, done <-chan struct{}) int64 {
	d := max(int64(deadline.Sub(w.epoch)), 1)
	if done != w.lastDone {
		w.done.Store(done)
		w.lastDone = done
	}
	w.due.Store(d)
	if f := w.fireAt.Load(); f != 0 && f <= d {
		return d // the timer fires by then; it will re-arm itself for d
	}
	w.mu.Lock()
	if f := w.fireAt.Load(); f == 0 || f > d {
		now := int64(time.Since(w.epoch))
		at := min(d, now+int64(cancelPoll))
		w.fireAt.Store(at)
		w.timer.Reset(time.Duration(at - now))
	}
	w.mu.Unlock()
	return d
}

// stopped reports whether the watch stopped the running call.
func (w *watch) stopped() bool { return w.due.Load() == stopped }

// disarm ends the watch of a call and reports whether the call was stopped.
func (w *watch) disarm() (wasStopped bool) { return w.due.Swap(0) == stopped }

// fire is the timer's function. (fireAt is cleared before due is read, and arm stores due
// before it reads fireAt, so one of them sees the other: a call armed while fire runs is
// never left unwatched.)
func (w *watch) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fireAt.Store(0)
	for {
		d := w.due.Load()
		if d <= 0 {
			return // idle, or already stopped
		}
		now := int64(time.Since(w.epoch))
		if d > now && !w.cancelled() {
			at := min(d, now+int64(cancelPoll))
			w.fireAt.Store(at)
			w.timer.Reset(time.Duration(at - now))
			return
		}
		if w.due.CompareAndSwap(d, stopped) {
			w.stop()
			return
		}
	}
}

// cancelled reports whether the running call's context is done.
func (w *watch) cancelled() bool {
	done, _ := w.done.Load().(<-chan struct{})
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// close stops the timer for good.
func (w *watch) close() { w.timer.Stop() }
