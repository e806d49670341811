package host_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	wb "github.com/osprey-ml/osprey/host/internal/wasmbuild"
)

// loadWith loads wasm as the program of fqn with the given spec.builder.config.
func loadWith(t testing.TB, h *host.Host, fqn string, wasm []byte, cfg map[string]string) (engine.Program, error) {
	t.Helper()
	f := feature(t, h, fqn, wasm)
	f.Builder.Config = cfg
	return h.LoadProgram(context.Background(), f)
}

func mustLoadWith(t testing.TB, h *host.Host, fqn string, wasm []byte, cfg map[string]string) engine.Program {
	t.Helper()
	p, err := loadWith(t, h, fqn, wasm, cfg)
	if err != nil {
		t.Fatalf("load %s: %v", fqn, err)
	}
	return p
}

func runInt(t testing.TB, p engine.Program) int64 {
	t.Helper()
	res, err := run(p, 5*time.Second)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res.Value.Int()
}

// A 1.0 guest (the WAT fixtures declare 1.0 and export no osprey_configure) runs as before
// whatever its configuration: nothing is delivered.
func TestABI10GuestIgnoresConfig(t *testing.T) {
	h := newHost(t)
	p := mustLoadWith(t, h, "t.old", wb.ABIVersion(abi.Version10), map[string]string{"max": "1", "memoryLimit": "1Mi"})
	for range 3 {
		if got := runInt(t, p); got != 42 {
			t.Fatalf("run = %d, want 42", got)
		}
	}
}

// The configure export and the version a module declares must agree; a refusal fails the
// apply with the guest's message.
func TestConfigureAtApply(t *testing.T) {
	tests := []struct {
		name    string
		wasm    []byte
		wantErr []error
		msg     string
	}{
		{"1.1 accepts", wb.ConfigurableProgram(abi.Version, false), nil, ""},
		{"1.2 accepts", wb.ConfigurableProgram(abi.Major<<16|2, false), nil, ""},
		{"1.0 with osprey_configure", wb.ConfigurableProgram(abi.Version10, false), []error{host.ErrModule},
			"exports osprey_configure, which ABI 1.1 defines, but osprey_abi_version returns 1.0"},
		{"refused", wb.ConfigurableProgram(abi.Version, true), []error{host.ErrConfigRefused, engine.ErrInvalidFeature},
			"config: the guest refused its configuration: " + wb.RefusedMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t)
			p, err := loadWith(t, h, "t.cfg", tt.wasm, map[string]string{"k": "v"})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				// Configured once, when applied; the calls find the instance configured.
				for range 3 {
					if got := runInt(t, p); got != 1 {
						t.Fatalf("configured %d times, want 1", got)
					}
				}
				return
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want it to say %q", err, tt.msg)
			}
		})
	}
}

// Objects sharing a module share its pool: equal configurations share configured
// instances, and an instance moving to another configuration is given it first.
func TestConfigSharedPool(t *testing.T) {
	h := newHost(t)
	wasm := wb.ConfigurableProgram(abi.Version, false)
	a := mustLoadWith(t, h, "t.a", wasm, map[string]string{"k": "1"})
	same := mustLoadWith(t, h, "t.same", wasm, map[string]string{"k": "1", "memoryLimit": "32Mi"}) // memoryLimit is the host's
	if got := runInt(t, same); got != 1 {
		t.Fatalf("equal configuration: configured %d times, want 1", got)
	}
	b := mustLoadWith(t, h, "t.b", wasm, map[string]string{"k": "2"})
	// One idle instance, alternating objects: each call re-delivers.
	want := int64(2) // the apply of t.b configured it a second time
	for i := range 4 {
		p := a
		if i%2 == 1 {
			p = b
		}
		want++
		if got := runInt(t, p); got != want {
			t.Fatalf("call %d: configured %d times, want %d", i, got, want)
		}
	}
}

// A Go guest built with the SDK reads its own object's configuration, also when objects
// with different configurations share the module's instances concurrently.
func TestGoGuestConfig(t *testing.T) {
	wasm := buildGuest(t, "host/testdata/guests/config")
	h := newHost(t, host.WithMaxInstances(2))
	progs := make([]engine.Program, 4)
	for i := range progs {
		progs[i] = mustLoadWith(t, h, "t.cfg"+string(rune('a'+i)), wasm, map[string]string{"n": string(rune('0' + i)), "memoryLimit": "24Mi"})
	}
	none := mustLoadWith(t, h, "t.none", wasm, nil)
	if got := runInt(t, none); got != -1 {
		t.Fatalf("no config: %d, want -1", got)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				k := (g + i) % len(progs)
				res, err := run(progs[k], 10*time.Second)
				if err != nil || res.Value.Int() != int64(k) {
					t.Errorf("program %d = %v, %v; want %d", k, res.Value, err, k)
					return
				}
			}
		}()
	}
	wg.Wait()
	_, err := loadWith(t, h, "t.bad", wasm, map[string]string{"n": "many"})
	if !errors.Is(err, host.ErrConfigRefused) || !strings.Contains(err.Error(), `config n: "many" is not an integer`) {
		t.Fatalf("bad config: %v", err)
	}
}

// The example middleware takes its maximum from its config and refuses one that is not a
// number when it is applied.
func TestClipExampleConfig(t *testing.T) {
	wasm := buildGuest(t, "examples/middleware/clip")
	h := newHost(t)
	ref, err := h.AddModule(wasm)
	if err != nil {
		t.Fatal(err)
	}
	f := &engine.Feature{FQN: "payments.amount"}
	tests := []struct {
		max     string
		in      float64
		want    float64
		wantErr string
	}{
		{"500", 25000, 500, ""},
		{"10000", 25000, 10000, ""},
		{"10000", 20, 20, ""},
		{"lots", 0, 0, `config max: "lots" is not a finite number`},
		{"-1", 0, 0, "config max: must not be negative"},
	}
	for _, tt := range tests {
		mw, err := h.ResolveMiddleware(context.Background(), f, engine.MiddlewareRef{Name: "clip_amount", Module: ref, Config: map[string]string{"max": tt.max}})
		if tt.wantErr != "" {
			if !errors.Is(err, host.ErrConfigRefused) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("max %s: %v, want a refusal saying %q", tt.max, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		call := &engine.Call{Feature: f, Stage: engine.StagePreSet, Op: engine.OpSet, Keys: engine.Keys{"account_id": "a1"}, Timestamp: time.Now()}
		got, err := mw(context.Background(), call, engine.Float(tt.in))
		if err != nil || got.Float() != tt.want {
			t.Errorf("max %s: clip(%v) = %v, %v; want %v", tt.max, tt.in, got, err, tt.want)
		}
	}
}
