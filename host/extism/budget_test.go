package extism_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/host/extism"
)

// TestBudget: instances of every plugin sharing a Budget reserve their ceiling; one that
// does not fit is not made (ErrLimit, naming the budget) while the others serve; closing
// releases what they reserved.
func TestBudget(t *testing.T) {
	const pages = 16
	perInstance := int64(2 * pages * 64 << 10)
	b := extism.NewBudget(2 * perInstance)
	p := extism.DefaultPolicy
	p.Budget = b
	limits := extism.Limits{MemoryPages: pages, Timeout: 300 * time.Millisecond}
	loopLimits := extism.Limits{MemoryPages: pages, Timeout: 2 * time.Second}
	loop := load(t, p, extism.Spec{Name: "loop", Module: module(t, "testdata/hostile/loop.wasm"), Limits: loopLimits})
	echo := load(t, p, extism.Spec{Name: "echo", Module: module(t, "testdata/echo.wasm"), Limits: limits})
	if got := b.Used(); got != 2*perInstance {
		t.Fatalf("two plugins loaded: %d bytes reserved, want %d", got, 2*perInstance)
	}
	// Two loop calls at once: one takes the loaded instance (and times out); the other needs
	// a second instance, which does not fit.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = loop.Call(ctx, "loop", nil)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	// The other plugin's instance serves meanwhile.
	if out, err := echo.Call(ctx, "echo", []byte(`{"x":1}`)); err != nil || len(out) == 0 {
		t.Fatalf("echo while the budget is full: %q, %v", out, err)
	}
	wg.Wait()
	limited, timedOut := 0, 0
	for _, err := range errs {
		switch {
		case errors.Is(err, extism.ErrLimit) && strings.Contains(err.Error(), "memory budget"):
			limited++
		case errors.Is(err, extism.ErrTimeout):
			timedOut++
		default:
			t.Errorf("a loop call: %v", err)
		}
	}
	if limited != 1 || timedOut != 1 {
		t.Fatalf("%d calls refused by the budget and %d timed out, want 1 and 1", limited, timedOut)
	}
	echo.Close(ctx)
	loop.Close(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for b.Used() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := b.Used(); got != 0 {
		t.Fatalf("after Close, %d bytes still reserved", got)
	}
	// A plugin whose first instance does not fit does not load.
	small := extism.DefaultPolicy
	small.Budget = extism.NewBudget(perInstance - 1)
	if _, err := extism.Load(ctx, small, extism.Spec{Name: "echo", Module: module(t, "testdata/echo.wasm"), Limits: limits}, quiet); !errors.Is(err, extism.ErrLimit) {
		t.Fatalf("Load beyond the budget: %v", err)
	}
}
