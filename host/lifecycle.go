package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/moduleref"
)

// Module lifecycle. A module — its bytes, its compiled code for each memory limit, its pool
// of instances and their memories — lives while something needs it:
//
//   - an applied object names it: the owner of the applied set (registry.Registry, through
//     its registry.Modules interface) tells the host which features are applied with Retain
//     after every change;
//   - or it is held: an apply in progress holds the modules it added (Hold), so that a
//     Retain from another change cannot release them before the apply is decided.
//
// Everything else is released at once: a rejected upload's bytes, a failed apply's compiled
// module, the modules of a deleted or replaced feature. A call still running on a released
// module finishes; its instance is closed when it returns. Until the first Retain nothing is
// released, so a Host used without one (tests, tools) keeps what it loaded.

var errHostClosed = errors.New("host closed")

// Retain keeps the modules the features name — each feature's program and Wasm
// middlewares, at the memory limits their configs ask for — and releases every other module
// the host has, compiled or not, that no Hold keeps. Call it after every change of the
// applied set, with the whole set.
func (h *Host) Retain(ctx context.Context, features []*engine.Feature) {
	keys := map[moduleKey]bool{}
	refs := map[string]bool{}
	keep := func(ref string, cfg map[string]string) {
		if !moduleref.Is(ref) {
			return
		}
		refs[ref] = true
		if pages, err := h.memoryLimit(cfg, ""); err == nil {
			keys[moduleKey{digest: moduleref.Digest(ref), pages: pages}] = true
		}
	}
	for _, f := range features {
		if f.Builder.Kind == BuilderWasm {
			keep(f.Builder.Module, f.Builder.Config)
		}
		for _, mw := range f.Middlewares {
			if mw.Module != "" {
				keep(mw.Module, mw.Config)
			}
		}
	}
	h.mu.Lock()
	h.retainedKeys, h.retainedRefs = keys, refs
	h.mu.Unlock()
	h.sweep(ctx)
}

// Hold keeps the modules refs name (their bytes and every compiled variant) until release is
// called, whether or not an applied feature names them. release may be called more than
// once; the first call counts.
func (h *Host) Hold(refs ...string) (release func()) {
	refs = append([]string(nil), refs...)
	h.mu.Lock()
	for _, r := range refs {
		h.holds[r]++
	}
	h.mu.Unlock()
	done := false
	return func() {
		h.mu.Lock()
		if done {
			h.mu.Unlock()
			return
		}
		done = true
		for _, r := range refs {
			if h.holds[r]--; h.holds[r] <= 0 {
				delete(h.holds, r)
			}
		}
		h.mu.Unlock()
		h.sweep(context.Background())
	}
}

// sweep releases what neither the last Retain nor a Hold keeps. Before the first Retain it
// does nothing. Modules still compiling are left for the next sweep.
func (h *Host) sweep(ctx context.Context) {
	h.mu.Lock()
	if h.retainedKeys == nil || h.closed {
		h.mu.Unlock()
		return
	}
	var released []*module
	for key, m := range h.modules {
		if h.retainedKeys[key] || h.holds[key.ref()] > 0 {
			continue
		}
		select {
		case <-m.ready:
		default:
			continue // compiling: its loader decides
		}
		delete(h.modules, key)
		released = append(released, m)
	}
	for ref := range h.blobs {
		if !h.retainedRefs[ref] && h.holds[ref] == 0 {
			delete(h.blobs, ref)
		}
	}
	h.mu.Unlock()
	for _, m := range released {
		m.release(ctx)
	}
}

// pools lists the pools of the loaded modules (for the budget's evictions).
func (h *Host) pools() []*pool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*pool, 0, len(h.modules))
	for _, m := range h.modules {
		select {
		case <-m.ready:
			if m.pool != nil {
				out = append(out, m.pool)
			}
		default: // compiling: its pool (if any) is not shared yet
		}
	}
	return out
}

// Stats is a snapshot of what a Host holds, for operators and tests.
type Stats struct {
	Modules        int           // compiled modules (one per module content and memory limit)
	Blobs          int           // modules whose bytes are kept
	BlobBytes      int64         // their bytes
	Instances      int           // live instances, idle or busy
	InstancesBusy  int           // instances running a call (or reserved for one)
	Waits          int64         // calls that waited for an instance, since the host started
	Compiles       int64         // module compiles, since the host started
	CompileTime    time.Duration // spent compiling, since the host started
	MemoryInUse    int64         // charged to the memory budget by live instances
	MemoryReserved int64         // reserved by the loaded modules (one instance each at its ceiling)
	MemoryBudget   int64         // the budget (WithMemoryBudget)
}

// Stats returns a snapshot of what the host holds.
func (h *Host) Stats() Stats {
	var s Stats
	h.mu.Lock()
	s.Modules = len(h.modules)
	s.Blobs = len(h.blobs)
	for _, b := range h.blobs {
		s.BlobBytes += int64(len(b))
	}
	h.mu.Unlock()
	h.instances.Range(func(_, _ any) bool { s.Instances++; return true })
	for _, p := range h.pools() {
		s.InstancesBusy += len(p.sem)
	}
	s.Waits, s.Compiles, s.CompileTime = h.waits.Load(), h.compileCount.Load(), time.Duration(h.compileNanos.Load())
	h.budget.mu.Lock()
	s.MemoryReserved, s.MemoryBudget = h.budget.floors, h.budget.total
	h.budget.mu.Unlock()
	s.MemoryInUse = h.budget.used.Load()
	return s
}

// Prepare compiles and checks the modules f names — its program and its Wasm middlewares —
// without applying anything, so that a caller can do the slow part of an apply outside its
// own locks: LoadProgram and ResolveMiddleware then find them compiled. A prepared module
// that is never applied is released by the next Retain that does not name it; Hold it until
// the apply is decided. Errors read like the engine's for the same field.
func (h *Host) Prepare(ctx context.Context, f *engine.Feature) error {
	if f.Builder.Kind == BuilderWasm && f.Builder.Module != "" {
		pages, err := h.memoryLimit(f.Builder.Config, "spec.builder.config")
		if err != nil {
			return fmt.Errorf("apply %s: spec.builder: %w", f.FQN, err)
		}
		m, err := h.load(ctx, f.Builder.Module, pages, roleProgram)
		if err == nil {
			err = m.checkMessages(f)
		}
		if err != nil {
			return fmt.Errorf("apply %s: spec.builder: module %s: %w", f.FQN, f.Builder.Module, err)
		}
	}
	for i, mw := range f.Middlewares {
		if mw.Module == "" {
			continue
		}
		pages, err := h.memoryLimit(mw.Config, "config")
		if err == nil {
			_, err = h.load(ctx, mw.Module, pages, roleMiddleware)
			if err != nil {
				err = fmt.Errorf("module %s: %w", mw.Module, err)
			}
		}
		if err != nil {
			return fmt.Errorf("apply %s: spec.middlewares[%d] (%s): %w", f.FQN, i, mw.Name, err)
		}
	}
	return nil
}
