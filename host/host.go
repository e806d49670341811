package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/moduleref"
)

// BuilderWasm is the builder kind of features whose programs are Wasm modules.
const BuilderWasm = "wasm"

// Defaults for a Host's limits.
const (
	DefaultMaxModuleSize = 32 << 20
	DefaultMemoryCeiling = 64 << 20
	DefaultMemoryLimit   = 32 << 20
	pageSize             = 64 << 10
)

// Sentinel errors; the messages that wrap them name the feature and what is wrong.
var (
	// ErrModule: a module is malformed or breaks the ABI (missing export, wrong signature,
	// unknown ABI version, forbidden import, too large). Returned when a feature is applied.
	ErrModule = errors.New("invalid module")
	// ErrTrap: a guest trapped (unreachable, out-of-bounds access, division by zero, stack
	// overflow), exited (a Go panic or os.Exit) or broke the protocol during a call.
	ErrTrap = errors.New("guest failed")
	// ErrModuleNotFound: a module reference names no module the Host has.
	ErrModuleNotFound = errors.New("module not found")
	// ErrGuestFailed: the guest answered a call with its own error status (a program or
	// middleware that returned an error). The instance is healthy; the call's input is what
	// the guest refused.
	ErrGuestFailed = errors.New("the guest reported an error")
	// ErrInputTooLarge: a call's encoded input (row, keys, value) is larger than the ABI's
	// message limit (abi.MaxMessageSize). Nothing ran.
	ErrInputTooLarge = errors.New("input too large")
	// ErrExhausted: the host's budget for guest memory cannot fit what was asked (an
	// instance for a call, or a module being applied).
	ErrExhausted = errors.New("guest memory budget exhausted")
)

// Host runs Wasm feature programs and middlewares. Create it with New; Close releases it.
type Host struct {
	cfg   config
	log   *slog.Logger
	epoch time.Time // the monotonic base of the instances' deadline watches
	cache wazero.CompilationCache

	budget   *budget       // all guest memory (budget.go)
	compiles chan struct{} // bounds the compiles running at once

	mu           sync.Mutex
	blobs        map[string][]byte           // digest ref → module bytes
	runtimes     map[uint32]*runtimeForLimit // memory limit in pages → runtime
	modules      map[moduleKey]*module       // compiled (or compiling) modules with their pools
	retainedKeys map[moduleKey]bool          // what the last Retain keeps (lifecycle.go); nil before it
	retainedRefs map[string]bool
	holds        map[string]int // ref → Holds keeping it
	closed       bool

	instances sync.Map // api.Module → *instance, for host functions

	// Counters for Stats: calls that waited for an instance, compiles and their time.
	waits, compileCount, compileNanos atomic.Int64

	guestLogs guestLogs // per-feature rate limits of guest log lines (guestlog.go)
}

type config struct {
	cacheDir      string
	maxModuleSize int
	memoryCeiling int
	maxInstances  int
	stop          stopMode
	initTimeout   time.Duration
	memoryBudget  int64
	maxCompiles   int
	structure     StructureLimits
	guestLog      guestLogLimit // WithGuestLogLimit (guestlog.go); zero: the defaults
}

// stopMode is how the host stops a guest that overruns its deadline (RATIONALE.md).
type stopMode int

const (
	// stopInstrument: a check of an exported global at every loop header, compiled into the
	// module by host/internal/instrument; the deadline sets the global. The default.
	stopInstrument stopMode = iota
	// stopWazero: wazero's WithCloseOnContextDone, which calls out to Go at every loop
	// header. Kept for the benchmarks that justify the default.
	stopWazero
	// stopNone: no way to stop a guest. Only for measuring the floor.
	stopNone
)

// Option configures a Host.
type Option func(*config)

// WithCompilationCache keeps compiled machine code in dir, so that a module compiles once
// per machine rather than once per process (~40 ms instead of ~1 s for a Go guest).
func WithCompilationCache(dir string) Option { return func(c *config) { c.cacheDir = dir } }

// WithMaxModuleSize sets the largest module accepted, in bytes (DefaultMaxModuleSize).
func WithMaxModuleSize(n int) Option { return func(c *config) { c.maxModuleSize = n } }

// WithMemoryCeiling sets the host-wide cap on a module's memory, in bytes
// (DefaultMemoryCeiling); a manifest's memoryLimit may ask for less, not more.
func WithMemoryCeiling(n int) Option { return func(c *config) { c.memoryCeiling = n } }

// WithMaxInstances caps the instances of one module (default 2 × GOMAXPROCS); a call that
// finds them all busy waits for one, within its deadline.
func WithMaxInstances(n int) Option { return func(c *config) { c.maxInstances = n } }

// WithInitTimeout bounds instantiating a module: its start function, _initialize and
// osprey_abi_version (default 10 s).
func WithInitTimeout(d time.Duration) Option { return func(c *config) { c.initTimeout = d } }

// WithGuestLogLimit limits what each feature's guests may log (osprey.log calls and stdout
// and stderr lines together, across all the feature's instances) to perSecond lines a second
// on average and burst lines at once (defaults DefaultGuestLogRate and DefaultGuestLogBurst).
// Lines over the limit are dropped and counted in a summary line at most once a second.
// perSecond <= 0 drops every guest line; burst < 1 means 1.
func WithGuestLogLimit(perSecond, burst int) Option {
	return func(c *config) { c.guestLog = guestLogLimit{perSecond: perSecond, burst: burst, set: true} }
}

// WithMemoryBudget sets the budget for all guest memory together — every instance's linear
// memory and tables, of every module — in bytes (default DefaultMemoryBudget(): a quarter of
// the machine's memory). Idle instances are evicted to make room; a call that still does
// not fit fails, and an apply whose module could not run one instance beside the loaded
// ones is refused, with ErrExhausted.
func WithMemoryBudget(n int64) Option { return func(c *config) { c.memoryBudget = n } }

// WithMaxCompiles bounds the modules compiling at once (default max(1, GOMAXPROCS/2)):
// compiling is CPU-bound, and a flood of applies must not starve the calls.
func WithMaxCompiles(n int) Option { return func(c *config) { c.maxCompiles = n } }

// WithStructureLimits sets the structural limits modules are checked against before they
// are compiled (default DefaultStructureLimits).
func WithStructureLimits(l StructureLimits) Option { return func(c *config) { c.structure = l } }

// withStopMode selects how runaway guests are stopped; only benchmarks use anything but the
// default.
func withStopMode(m stopMode) Option { return func(c *config) { c.stop = m } }

// New returns a Host. ctx is used only while New runs.
func New(ctx context.Context, log *slog.Logger, opts ...Option) (*Host, error) {
	cfg := config{maxModuleSize: DefaultMaxModuleSize, memoryCeiling: DefaultMemoryCeiling,
		maxInstances: 2 * runtime.GOMAXPROCS(0), initTimeout: 10 * time.Second,
		memoryBudget: DefaultMemoryBudget(), maxCompiles: max(1, runtime.GOMAXPROCS(0)/2),
		structure: DefaultStructureLimits}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxModuleSize <= 0 || cfg.memoryCeiling < pageSize || cfg.maxInstances < 1 || cfg.maxCompiles < 1 {
		return nil, fmt.Errorf("host: invalid limits (module size %d, memory ceiling %d, instances %d, compiles %d)", cfg.maxModuleSize, cfg.memoryCeiling, cfg.maxInstances, cfg.maxCompiles)
	}
	if cfg.memoryBudget < int64(cfg.memoryCeiling) {
		return nil, fmt.Errorf("host: the memory budget (%d bytes) is less than the memory ceiling of one module (%d bytes)", cfg.memoryBudget, cfg.memoryCeiling)
	}
	if log == nil {
		log = slog.Default()
	}
	h := &Host{cfg: cfg, log: log, epoch: time.Now(), blobs: map[string][]byte{}, runtimes: map[uint32]*runtimeForLimit{},
		modules: map[moduleKey]*module{}, holds: map[string]int{},
		compiles: make(chan struct{}, cfg.maxCompiles)}
	h.budget = newBudget(cfg.memoryBudget, h.pools)
	if cfg.cacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.cacheDir)
		if err != nil {
			return nil, fmt.Errorf("host: compilation cache %s: %w", cfg.cacheDir, err)
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	return h, nil
}

// Close closes every instance and runtime.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	var ready []*module
	for _, m := range h.modules {
		select {
		case <-m.ready:
			if m.err == nil {
				ready = append(ready, m)
			}
		default: // still compiling: closing its runtime below ends it
		}
	}
	runtimes := make([]*runtimeForLimit, 0, len(h.runtimes))
	for _, rt := range h.runtimes {
		runtimes = append(runtimes, rt)
	}
	h.mu.Unlock()
	// Released outside h.mu: a release takes the budget's lock, which an eviction holds
	// while it lists the pools under h.mu.
	for _, m := range ready {
		m.release(ctx)
	}
	var errs []error
	for _, rt := range runtimes {
		errs = append(errs, rt.r.Close(ctx))
	}
	errs = append(errs, h.cache.Close(ctx))
	return errors.Join(errs...)
}

// AddModule stores module bytes and returns their reference, "sha256:<hex>", for use in a
// feature's builder.module or a middleware's module. The module is checked when a feature
// using it is applied.
func (h *Host) AddModule(wasm []byte) (string, error) {
	if len(wasm) > h.cfg.maxModuleSize {
		return "", fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrModule, len(wasm), h.cfg.maxModuleSize)
	}
	ref := moduleref.Of(wasm)
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.blobs[ref]; !ok {
		h.blobs[ref] = append([]byte(nil), wasm...)
	}
	return ref, nil
}

// moduleBytes returns the bytes a reference names.
func (h *Host) moduleBytes(ref string) ([]byte, error) {
	h.mu.Lock()
	b, ok := h.blobs[ref]
	h.mu.Unlock()
	if ok {
		return b, nil
	}
	return nil, fmt.Errorf("%w: %q (add it with AddModule)", ErrModuleNotFound, ref)
}

// runtimeForLimit is a wazero runtime for one memory limit: wazero limits memory per
// runtime, so modules with different limits live in different runtimes (sharing the
// compilation cache).
type runtimeForLimit struct {
	r     wazero.Runtime
	pages uint32
}

func (h *Host) runtimeFor(ctx context.Context, pages uint32) (*runtimeForLimit, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errHostClosed
	}
	if rt, ok := h.runtimes[pages]; ok {
		return rt, nil
	}
	cfg := wazero.NewRuntimeConfigCompiler().
		WithMemoryLimitPages(pages).
		WithCloseOnContextDone(h.cfg.stop == stopWazero).
		WithCompilationCache(h.cache)
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("host: wasi: %w", err)
	}
	if err := h.instantiateHostModule(ctx, r); err != nil {
		r.Close(ctx)
		return nil, err
	}
	rt := &runtimeForLimit{r: r, pages: pages}
	h.runtimes[pages] = rt
	return rt, nil
}

// memoryLimit returns the memory limit asked for by a config (key memoryLimit: bytes, or a
// number with Ki, Mi or Gi), checked against the host's ceiling, in pages.
func (h *Host) memoryLimit(cfg map[string]string, path string) (uint32, error) {
	n := DefaultMemoryLimit
	if s, ok := cfg["memoryLimit"]; ok {
		v, err := ParseSize(s)
		if err != nil {
			return 0, fmt.Errorf("%s.memoryLimit: %w", path, err)
		}
		n = v
	}
	if n > h.cfg.memoryCeiling {
		return 0, fmt.Errorf("%s.memoryLimit: %d bytes is above the host's ceiling of %d", path, n, h.cfg.memoryCeiling)
	}
	if n < pageSize {
		return 0, fmt.Errorf("%s.memoryLimit: %d bytes is less than one 64 KiB page", path, n)
	}
	return uint32(n / pageSize), nil
}

// ParseSize parses a memory size: a number of bytes, or a number with Ki, Mi or Gi (KiB,
// MiB, GiB), e.g. 32Mi.
func ParseSize(s string) (int, error) {
	mult := 1
	num := strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	var n int
	if _, err := fmt.Sscanf(num, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != num {
		return 0, fmt.Errorf("%q is not a size (want bytes, or a number with Ki, Mi or Gi, e.g. 32Mi)", s)
	}
	if n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// LoadProgram compiles and checks the program of a feature with builder "wasm" (it
// implements engine.ProgramLoader).
func (h *Host) LoadProgram(ctx context.Context, f *engine.Feature) (engine.Program, error) {
	if f.Builder.Kind != BuilderWasm {
		return nil, fmt.Errorf("%w: builder kind %q (this host runs %q)", engine.ErrUnsupported, f.Builder.Kind, BuilderWasm)
	}
	if f.Builder.Module == "" {
		return nil, fmt.Errorf("module: missing (the .wasm file or a sha256: reference)")
	}
	pages, err := h.memoryLimit(f.Builder.Config, "spec.builder.config")
	if err != nil {
		return nil, err
	}
	cfg, err := configOf(f.Builder.Config, "spec.builder.config")
	if err != nil {
		return nil, err
	}
	m, err := h.load(ctx, f.Builder.Module, pages, roleProgram)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", f.Builder.Module, err)
	}
	if err := m.checkMessages(f); err != nil {
		return nil, fmt.Errorf("module %s: %w", f.Builder.Module, err)
	}
	if err := m.checkConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	p := &program{m: m, fqn: f.FQN, cfg: cfg, messages: f.Messages != engine.PrimitiveUnknown}
	for _, s := range f.Storage {
		p.storage = append(p.storage, s.Name)
	}
	return p, nil
}

// checkMessages checks that the program module m can serve f: a feature that receives
// messages (spec.builder.messages) needs a module of ABI 1.2 or later, which takes message
// calls (ABI.md §4.6).
func (m *module) checkMessages(f *engine.Feature) error {
	if f.Messages == engine.PrimitiveUnknown || abi.VersionMinor(m.version) >= 2 {
		return nil
	}
	return fmt.Errorf("%w: the feature receives messages (spec.builder.messages), which ABI 1.2 delivers as message calls, but osprey_abi_version returns %d.%d", ErrModule, abi.VersionMajor(m.version), abi.VersionMinor(m.version))
}

// ResolveMiddleware resolves a Wasm middleware (ref.Module set). For a native one it
// returns an error wrapping engine.ErrUnsupported; Resolver combines both kinds.
func (h *Host) ResolveMiddleware(ctx context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
	if ref.Module == "" {
		return nil, fmt.Errorf("%w: middleware %q is not a Wasm module", engine.ErrUnsupported, ref.Name)
	}
	pages, err := h.memoryLimit(ref.Config, "config")
	if err != nil {
		return nil, err
	}
	cfg, err := configOf(ref.Config, "config")
	if err != nil {
		return nil, err
	}
	m, err := h.load(ctx, ref.Module, pages, roleMiddleware)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", ref.Module, err)
	}
	if err := m.checkConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	mw := &middleware{m: m, name: ref.Name, cfg: cfg}
	return mw.run, nil
}

// Resolver returns a MiddlewareResolver that resolves Wasm middlewares with h and native
// ones with native.
func (h *Host) Resolver(native engine.MiddlewareResolver) engine.MiddlewareResolver {
	return engine.MiddlewareResolverFunc(func(ctx context.Context, f *engine.Feature, ref engine.MiddlewareRef) (engine.Middleware, error) {
		if ref.Module != "" {
			return h.ResolveMiddleware(ctx, f, ref)
		}
		if native == nil {
			return nil, fmt.Errorf("%w: native middleware %q: no native middlewares configured", engine.ErrUnsupported, ref.Name)
		}
		return native.ResolveMiddleware(ctx, f, ref)
	})
}
