// Package extism hosts third-party Extism plugins under the host's sandbox rules, with a
// host of its own for the Extism kernel ABI (kernel.go: the kernel module, embedded, and the
// "extism:host/env" functions; http.go: http_request) on the host's wazero:
//
//   - A module is checked against the host's structural limits before it is compiled,
//     rewritten for the host's stop-flag instrumentation (host/internal/instrument: a stop
//     check at every loop header and function entry, safe points that let the Go GC in),
//     compiled once, and run from a pool of instances, each its plugin module and its own
//     kernel (an instance serves one call at a time).
//   - Every call, and every instantiation (a start function, the guest runtime's
//     initialisation), is bounded by the plugin's timeout and the caller's context: when
//     either ends, the instance's stop flag is set, the guest traps at its next check and
//     host functions refuse to run; the instance is then discarded.
//   - Memory is capped in pages, for the plugin's memory and the kernel's (which holds the
//     input, output and everything exchanged); outputs, plugin variables and HTTP response
//     bodies have caps of their own.
//   - HTTP goes only to the hosts the plugin declared and the operator's Policy allows, and
//     so does every redirect; there is no filesystem and no environment (WASI is there for
//     the PDKs that import it, granting nothing).
//   - The plugin's log lines are rate-limited and marked as the plugin's.
//
// The roles plugins play (middleware, encoder, connector) and their JSON contracts are the
// callers' concern; this package runs functions on bytes.
package extism

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/gobwas/glob"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"golang.org/x/time/rate"

	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/host/internal/instrument"
)

// Errors callers branch on; each call error wraps one of them and names the plugin and the
// function.
var (
	// ErrFailed: the plugin reported an error (Extism's error_set, a non-zero return).
	ErrFailed = errors.New("plugin failed")
	// ErrTrap: the plugin trapped (unreachable, out-of-bounds access, a host function's
	// panic such as an HTTP request to a host it may not reach).
	ErrTrap = errors.New("plugin trapped")
	// ErrTimeout: the call did not finish within the plugin's timeout (or the caller's
	// deadline).
	ErrTimeout = errors.New("plugin call timed out")
	// ErrLimit: the call exceeded a limit: its memory, its output size, its variables, an
	// HTTP response's size.
	ErrLimit = errors.New("plugin exceeded a limit")
	// ErrDenied: the plugin asked for what the operator's Policy does not allow (at load)
	// or called a host it did not declare (or was redirected to one).
	ErrDenied = errors.New("not allowed by the plugin policy")
	// ErrNoFunction: the plugin does not export the function called or declared.
	ErrNoFunction = errors.New("plugin has no such function")
	// ErrClosed: the plugin was closed.
	ErrClosed = errors.New("plugin closed")
)

// Limits bound one plugin's calls.
type Limits struct {
	// Timeout bounds one call.
	Timeout time.Duration
	// MemoryPages caps each linear memory, in 64 KiB pages (the plugin's and the Extism
	// kernel's, which holds its input and output).
	MemoryPages uint32
	// MaxHTTPResponseBytes caps the body of one HTTP response the plugin receives.
	MaxHTTPResponseBytes int64
	// MaxOutputBytes caps one call's output.
	MaxOutputBytes int64
}

// DefaultLimits are what a plugin gets for what it does not ask for.
var DefaultLimits = Limits{Timeout: time.Second, MemoryPages: 256, MaxHTTPResponseBytes: 1 << 20, MaxOutputBytes: 1 << 20}

// Policy is the operator's ceiling on every plugin: what Load refuses beyond.
type Policy struct {
	// AllowedHosts are the hosts plugins may declare for HTTP: a plugin's host must equal
	// one of them, or be a plain host name that one of them, as a glob pattern (`*` within
	// a label: *.example.com), matches. Empty: no plugin may make HTTP requests.
	AllowedHosts []string
	// Max are the largest limits a plugin may ask for.
	Max Limits
	// Instances bounds the instances of one plugin (calls beyond wait for one).
	Instances int
	// Structure is the structural limits modules are checked against.
	Structure host.StructureLimits
	// Budget bounds the memory of every plugin's instances together; nil: unbounded (each
	// instance is still capped by its MemoryPages).
	Budget *Budget
}

// DefaultPolicy allows no HTTP, a 10 s timeout, 64 MiB of memory per memory, 16 MiB
// responses and outputs.
var DefaultPolicy = Policy{Max: Limits{Timeout: 10 * time.Second, MemoryPages: 1024, MaxHTTPResponseBytes: 16 << 20, MaxOutputBytes: 16 << 20},
	Instances: 16, Structure: host.DefaultStructureLimits}

// Spec is one plugin as its manifest describes it.
type Spec struct {
	// Name names the plugin in errors and logs.
	Name string
	// Module is the Wasm module's bytes.
	Module []byte
	// Functions are the functions it must export (checked at load).
	Functions []string
	// Config is the Extism config the plugin reads (config_get).
	Config map[string]string
	// AllowedHosts are the hosts it may make HTTP requests to.
	AllowedHosts []string
	// Limits are what it asks for; a zero field takes DefaultLimits' (capped by the
	// Policy).
	Limits Limits
}

// Check validates s against p: every field beyond the policy is an error naming it
// (spec.allowedHosts[1], spec.limits.timeout, …).
func (p Policy) Check(s Spec) error {
	if len(s.Module) == 0 {
		return fmt.Errorf("plugin %s: spec.module: empty", s.Name)
	}
	for i, h := range s.AllowedHosts {
		if err := p.allowsHost(h); err != nil {
			return fmt.Errorf("plugin %s: spec.allowedHosts[%d]: %q: %w", s.Name, i, h, err)
		}
	}
	l := s.Limits.withDefaults()
	switch {
	case p.Max.Timeout > 0 && l.Timeout > p.Max.Timeout:
		return fmt.Errorf("plugin %s: spec.limits.timeout: %v is more than the %v allowed: %w", s.Name, l.Timeout, p.Max.Timeout, ErrDenied)
	case p.Max.MemoryPages > 0 && l.MemoryPages > p.Max.MemoryPages:
		return fmt.Errorf("plugin %s: spec.limits.memoryPages: %d is more than the %d allowed: %w", s.Name, l.MemoryPages, p.Max.MemoryPages, ErrDenied)
	case p.Max.MaxHTTPResponseBytes > 0 && l.MaxHTTPResponseBytes > p.Max.MaxHTTPResponseBytes:
		return fmt.Errorf("plugin %s: spec.limits.httpResponseBytes: %d is more than the %d allowed: %w", s.Name, l.MaxHTTPResponseBytes, p.Max.MaxHTTPResponseBytes, ErrDenied)
	case p.Max.MaxOutputBytes > 0 && l.MaxOutputBytes > p.Max.MaxOutputBytes:
		return fmt.Errorf("plugin %s: spec.limits.outputBytes: %d is more than the %d allowed: %w", s.Name, l.MaxOutputBytes, p.Max.MaxOutputBytes, ErrDenied)
	case l.Timeout < 0 || l.MaxHTTPResponseBytes < 0 || l.MaxOutputBytes < 0:
		return fmt.Errorf("plugin %s: spec.limits: negative", s.Name)
	}
	return nil
}

// allowsHost reports whether the policy lets a plugin declare h.
func (p Policy) allowsHost(h string) error {
	if h == "" || strings.ContainsAny(h, "/:@ \t") {
		return errors.New("not a host name (no scheme, port, path or credentials)")
	}
	if _, err := glob.Compile(h); err != nil { // compiled again at load, for the requests
		return fmt.Errorf("not a valid pattern: %v", err)
	}
	literal := !strings.ContainsAny(h, "*?[]{}!\\")
	for _, a := range p.AllowedHosts {
		if a == h {
			return nil
		}
		if g, err := glob.Compile(a); err == nil && literal && g.Match(h) {
			return nil
		}
	}
	if len(p.AllowedHosts) == 0 {
		return fmt.Errorf("%w: the operator allows no plugin HTTP (--plugin-allowed-hosts)", ErrDenied)
	}
	return fmt.Errorf("%w: not among the hosts the operator allows (%s)", ErrDenied, strings.Join(p.AllowedHosts, ", "))
}

func (l Limits) withDefaults() Limits {
	if l.Timeout == 0 {
		l.Timeout = DefaultLimits.Timeout
	}
	if l.MemoryPages == 0 {
		l.MemoryPages = DefaultLimits.MemoryPages
	}
	if l.MaxHTTPResponseBytes == 0 {
		l.MaxHTTPResponseBytes = DefaultLimits.MaxHTTPResponseBytes
	}
	if l.MaxOutputBytes == 0 {
		l.MaxOutputBytes = DefaultLimits.MaxOutputBytes
	}
	return l
}

// Plugin is a loaded plugin: compiled once, called from a pool of instances. It is safe for
// concurrent use.
type Plugin struct {
	name   string
	limits Limits
	log    *slog.Logger
	logs   *rate.Limiter
	config map[string]string
	hosts  hostMatcher
	client *http.Client    // nil when the plugin declares no hosts
	tr     *http.Transport // the client's, closed with the runtime

	budget *Budget // nil: none

	rt       wazero.Runtime
	kernel   wazero.CompiledModule
	compiled wazero.CompiledModule
	init     []initStep
	fnIndex  map[string]int // the module's exported functions, by name
	fnDefs   []api.FunctionDefinition
	fnErr    []error  // why Call cannot run each (nil: it can)
	fnRC     []bool   // whether each returns a value (the return code)
	byModule sync.Map // an instance's plugin module (api.Module) → its *instance

	tokens  chan struct{}  // one per instance that exists or is being made
	idle    chan *instance // instances waiting for a call
	closing chan struct{}  // closed by Close: waiting calls end
	isDone  atomic.Bool    // closed, for Call's first test
	mu      sync.Mutex     // guards done and out, and orders pushes to idle against Close
	done    bool
	out     int // instances in calls, or being made for one

	releaseOnce sync.Once
	released    chan struct{} // closed once the runtime is closed
}

// initStep is an export an instance runs once it is instantiated, before any call: the
// module's start function (see prepare), then its guest runtime's initialisation, as the
// SDK detects it (runtime.go): Haskell's hs_init(0, 0) after _initialize, a WASI reactor's
// _initialize, or a WASI command's __wasm_call_ctors.
type initStep struct {
	export  string
	args    []uint64
	logOnly bool // a failure is logged, not an error (the SDK's _initialize before hs_init)
}

// Load checks s against the policy and the structural limits, compiles it, checks that it
// exports the functions it declares, and instantiates one instance (kept for the first call;
// a start function that does not end within the timeout fails the load). ctx bounds the
// compile.
func Load(ctx context.Context, p Policy, s Spec, log *slog.Logger) (*Plugin, error) {
	if err := p.Check(s); err != nil {
		return nil, err
	}
	if err := p.Structure.Check(s.Module); err != nil {
		return nil, fmt.Errorf("plugin %s: spec.module: %w", s.Name, err)
	}
	if log == nil {
		log = slog.Default()
	}
	l := s.Limits.withDefaults()
	if l.MemoryPages < kernelPages {
		return nil, fmt.Errorf("plugin %s: spec.limits.memoryPages: %d, fewer than the %d pages the Extism kernel's memory starts with", s.Name, l.MemoryPages, kernelPages)
	}
	prepared, hasStart, err := prepare(s.Module)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: spec.module: %w", s.Name, err)
	}
	// The structure was checked above; this pass rewrites (and caps the tables' maximums).
	res, err := instrument.Instrument(prepared, instrument.Limits{MaxTableEntries: p.Structure.TableEntries})
	if err != nil {
		return nil, fmt.Errorf("plugin %s: spec.module: %w", s.Name, err)
	}
	hosts, err := newHostMatcher(s.AllowedHosts)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: spec.allowedHosts: %w", s.Name, err)
	}
	instances := p.Instances
	if instances <= 0 {
		instances = DefaultPolicy.Instances
	}
	pl := &Plugin{name: s.Name, limits: l, log: log.With(slog.String("plugin", s.Name)), logs: rate.NewLimiter(10, 20),
		config: maps.Clone(s.Config), hosts: hosts, fnIndex: map[string]int{}, budget: p.Budget,
		tokens: make(chan struct{}, instances), idle: make(chan *instance, instances), closing: make(chan struct{}), released: make(chan struct{})}
	if len(s.AllowedHosts) > 0 {
		pl.client, pl.tr = newHTTPClient(&pl.hosts)
	}
	// One runtime per plugin: its memory limit is the plugin's. No CloseOnContextDone: the
	// instrumentation stops the guest (see instance.arm).
	pl.rt = wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(l.MemoryPages))
	fail := func(err error) (*Plugin, error) {
		pl.releaseRuntime(context.WithoutCancel(ctx))
		return nil, err
	}
	// WASI for the PDKs that import it (clocks, random): wazero's grants no filesystem,
	// environment or arguments that the module config does not, and it grants none.
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, pl.rt); err != nil {
		return fail(fmt.Errorf("plugin %s: WASI: %w", s.Name, err))
	}
	if err := pl.instantiateEnv(ctx, pl.rt); err != nil {
		return fail(fmt.Errorf("plugin %s: %s: %w", s.Name, envModule, err))
	}
	if pl.kernel, err = pl.rt.CompileModule(ctx, kernelWasm); err != nil {
		return fail(fmt.Errorf("plugin %s: compile the Extism kernel %s: %w", s.Name, strings.TrimSpace(kernelVersion), err))
	}
	if pl.compiled, err = pl.rt.CompileModule(ctx, res.Wasm); err != nil {
		return fail(fmt.Errorf("plugin %s: compile: %w", s.Name, err))
	}
	defs := pl.compiled.ExportedFunctions()
	for name, def := range defs {
		if name != startExport {
			pl.fnIndex[name] = len(pl.fnDefs)
			pl.fnDefs = append(pl.fnDefs, def)
		}
	}
	for _, d := range pl.fnDefs {
		pl.fnErr = append(pl.fnErr, callable(d))
		pl.fnRC = append(pl.fnRC, len(d.ResultTypes()) == 1)
	}
	for _, fn := range s.Functions {
		i, ok := pl.fnIndex[fn]
		if !ok {
			return fail(fmt.Errorf("plugin %s: spec.functions: %q: %w", s.Name, fn, ErrNoFunction))
		}
		if err := pl.fnErr[i]; err != nil {
			return fail(fmt.Errorf("plugin %s: spec.functions: %q: %w", s.Name, fn, err))
		}
	}
	if hasStart {
		pl.init = append(pl.init, initStep{export: startExport})
	}
	noParams := func(name string) bool { d, ok := defs[name]; return ok && len(d.ParamTypes()) == 0 }
	switch {
	case defs["hs_init"] != nil:
		if defs["_initialize"] != nil {
			pl.init = append(pl.init, initStep{export: "_initialize", logOnly: true})
		}
		pl.init = append(pl.init, initStep{export: "hs_init", args: []uint64{0, 0}})
	case noParams("_initialize"):
		pl.init = append(pl.init, initStep{export: "_initialize"})
	case noParams("__wasm_call_ctors"):
		pl.init = append(pl.init, initStep{export: "__wasm_call_ctors"})
	}
	pl.tokens <- struct{}{}
	inst, err := pl.newInstance(ctx)
	if err != nil {
		return fail(err)
	}
	pl.idle <- inst
	return pl, nil
}

// callable returns nil if d is a function Call can run (no parameters, at most one result:
// the return code), or the ErrNoFunction saying why not.
func callable(d api.FunctionDefinition) error {
	if len(d.ParamTypes()) > 0 || len(d.ResultTypes()) > 1 {
		return fmt.Errorf("%w: its type is %v -> %v, not an Extism function's () -> i32", ErrNoFunction, valueTypes(d.ParamTypes()), valueTypes(d.ResultTypes()))
	}
	return nil
}

func valueTypes(ts []api.ValueType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = api.ValueTypeName(t)
	}
	return out
}

// Name returns the plugin's name.
func (p *Plugin) Name() string { return p.name }

// instance is one instantiation of a plugin: its module and its kernel. It serves one call
// at a time; host functions find it by its module (Plugin.byModule).
type instance struct {
	p      *Plugin
	main   api.Module
	kmod   api.Module
	mem    api.Memory // the kernel's
	k      [kernelFuncs]api.Function
	fns    []api.Function // Plugin.fnDefs' functions, looked up at their first call
	kstack [2]uint64      // for the host's kernel calls
	cstack [1]uint64      // for the plugin's export

	// The stop: timer and cancelStop (the caller's context ending) call fire, which sets
	// the instrumentation's stop flag; the guest traps at its next check, and host
	// functions see stopped.
	stop       api.MutableGlobal
	timer      *time.Timer
	fireFn     func() // fire, made once
	cancelStop func() bool
	stopped    atomic.Bool

	inOff, inLen uint64 // the kernel's input, as input_set or reset last left it

	// The running call (or instantiation): its context and deadline, for http_request.
	ctx      context.Context
	deadline time.Time

	vars     map[string][]byte // var_set's, kept across the instance's calls
	varBytes int
	status   int32             // the last HTTP response's status (http_status_code)
	headers  map[string]string // and headers (http_headers)

	reserved bool // it holds instanceBytes of the plugin's budget, released by close
}

// newInstance instantiates the plugin's kernel and module, then runs its start function and
// runtime initialisation, bounded like a call.
func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	if err := p.reserveInstance(); err != nil {
		return nil, err
	}
	in := &instance{p: p, fns: make([]api.Function, len(p.fnDefs)), reserved: p.budget != nil}
	in.fireFn = in.fire
	in.timer = time.AfterFunc(time.Hour, in.fireFn)
	in.timer.Stop()
	fail := func(err error) (*instance, error) {
		in.close()
		return nil, err
	}
	var err error
	if in.kmod, err = p.rt.InstantiateModule(ctx, p.kernel, wazero.NewModuleConfig().WithName("")); err != nil {
		return fail(fmt.Errorf("plugin %s: instantiate the Extism kernel: %w", p.name, classify(err)))
	}
	in.mem = in.kmod.ExportedMemory("memory")
	for i, name := range kernelExports {
		if in.k[i] = in.kmod.ExportedFunction(name); in.k[i] == nil {
			return fail(fmt.Errorf("plugin %s: the Extism kernel exports no %s", p.name, name))
		}
	}
	// Anonymous (a plugin has many instances); no start functions (the start section is
	// an export now, run below); WASI with nothing granted.
	if in.main, err = p.rt.InstantiateModule(ctx, p.compiled, wazero.NewModuleConfig().WithName("").WithStartFunctions()); err != nil {
		return fail(fmt.Errorf("plugin %s: instantiate: %w", p.name, classify(err)))
	}
	p.byModule.Store(in.main, in)
	var ok bool
	if in.stop, ok = in.main.ExportedGlobal(instrument.StopExport).(api.MutableGlobal); !ok {
		return fail(fmt.Errorf("plugin %s: instantiate: the instrumented module exports no stop flag", p.name))
	}
	in.arm(ctx)
	err = in.initialize()
	if in.disarm() {
		if ctx.Err() != nil {
			return fail(fmt.Errorf("plugin %s: instantiate: %w: %w", p.name, ErrTimeout, ctx.Err()))
		}
		return fail(fmt.Errorf("plugin %s: instantiate: not finished within its timeout (%v): %w", p.name, p.limits.Timeout, ErrTimeout))
	}
	if err != nil {
		return fail(fmt.Errorf("plugin %s: instantiate: %w", p.name, in.trapError(err)))
	}
	return in, nil
}

// initialize runs the plugin's initSteps.
func (in *instance) initialize() error {
	for _, st := range in.p.init {
		f := in.main.ExportedFunction(st.export)
		if f == nil {
			continue
		}
		if _, err := f.Call(in.ctx, st.args...); err != nil {
			what := st.export
			if what == startExport {
				what = "the start function"
			}
			if !st.logOnly {
				return fmt.Errorf("%s: %w", what, err)
			}
			in.p.log.Warn("plugin initialisation", slog.String("export", st.export), slog.String("error", clip(err.Error())))
		}
	}
	return nil
}

// arm starts the watch of a call (or an instantiation): at the plugin's timeout, or when
// ctx ends, fire stops the guest. A deadline of ctx earlier than the timeout ends ctx too.
// The timer is the instance's own, reset rather than made; context.AfterFunc is needed (and
// allocates) only for a context that can end.
func (in *instance) arm(ctx context.Context) {
	in.ctx = ctx
	in.deadline = time.Now().Add(in.p.limits.Timeout)
	in.timer.Reset(in.p.limits.Timeout)
	if ctx.Done() != nil {
		in.cancelStop = context.AfterFunc(ctx, in.fireFn)
	}
}

// disarm ends the watch and reports whether it stopped the guest (or was about to: a fire
// that raced with the call's end has set, or will set, the flag, so the instance is not
// used again).
func (in *instance) disarm() (stopped bool) {
	stopped = !in.timer.Stop()
	if in.cancelStop != nil {
		if !in.cancelStop() {
			stopped = true
		}
		in.cancelStop = nil
	}
	in.ctx = nil
	return stopped || in.stopped.Load()
}

// fire stops the guest: it sets the stop flag, which the guest tests at its next safe
// point (it then traps), and stopped, which host functions test.
func (in *instance) fire() {
	if in.stopped.CompareAndSwap(false, true) {
		in.stop.Set(1)
	}
}

// close closes the instance's modules.
func (in *instance) close() {
	in.timer.Stop()
	if in.reserved {
		in.reserved = false
		in.p.budget.release(in.p.instanceBytes())
	}
	ctx := context.Background()
	if in.main != nil {
		in.p.byModule.Delete(in.main)
		in.main.Close(ctx)
	}
	if in.kmod != nil {
		in.kmod.Close(ctx)
	}
}

// maxLogLine bounds a plugin's log line.
const maxLogLine = 1024

// guestLog logs a plugin's line, rate-limited, marked as the plugin's, its control
// characters escaped so that it cannot read as a line of the host's.
func (p *Plugin) guestLog(level int32, msg string) {
	if !p.logs.Allow() {
		return
	}
	if len(msg) > maxLogLine {
		msg = msg[:maxLogLine] + "…"
	}
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '·'
		}
		return r
	}, msg)
	lv := slog.LevelInfo
	switch level {
	case logError:
		lv = slog.LevelError
	case logWarn:
		lv = slog.LevelWarn
	case logDebug, logTrace:
		lv = slog.LevelDebug
	}
	p.log.LogAttrs(context.Background(), lv, "plugin log", slog.String("line", msg))
}

// get takes an idle instance, or makes one while fewer than the policy's exist, or waits
// for one (until ctx ends or the plugin is closed).
func (p *Plugin) get(ctx context.Context) (*instance, error) {
	select {
	case in := <-p.idle:
		return p.take(in)
	default:
	}
	select {
	case in := <-p.idle:
		return p.take(in)
	case p.tokens <- struct{}{}:
		if !p.checkout() {
			<-p.tokens
			return nil, p.errClosed()
		}
		in, err := p.newInstance(ctx)
		if err != nil {
			p.put(nil, false)
			return nil, err
		}
		return in, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("plugin %s: waiting for an instance: %w: %w", p.name, ErrTimeout, ctx.Err())
	case <-p.closing:
		return nil, p.errClosed()
	}
}

// take checks out an instance taken from idle, unless the plugin was closed meanwhile.
func (p *Plugin) take(in *instance) (*instance, error) {
	if p.checkout() {
		return in, nil
	}
	in.close()
	<-p.tokens
	return nil, p.errClosed()
}

// checkout counts an instance as in a call, unless the plugin is closed.
func (p *Plugin) checkout() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	p.out++
	return true
}

// put returns an instance from a call: to the pool, or closed (it was stopped or trapped,
// or the plugin was closed; in nil: an instantiation that failed). The last instance back
// after Close releases the runtime.
func (p *Plugin) put(in *instance, reuse bool) {
	p.mu.Lock()
	p.out--
	if reuse && !p.done {
		p.idle <- in // never blocks: at most cap(idle) instances exist (tokens)
		p.mu.Unlock()
		return
	}
	release := p.done && p.out == 0
	p.mu.Unlock()
	if in != nil {
		in.close()
	}
	<-p.tokens
	if release {
		p.releaseRuntime(context.Background())
	}
}

func (p *Plugin) errClosed() error { return fmt.Errorf("plugin %s: %w", p.name, ErrClosed) }

// Call runs fn on input and returns its output. The call is bounded by the plugin's timeout
// and ctx; its errors wrap ErrFailed, ErrTrap, ErrTimeout, ErrLimit, ErrDenied,
// ErrNoFunction or ErrClosed and name the plugin and the function.
func (p *Plugin) Call(ctx context.Context, fn string, input []byte) ([]byte, error) {
	if p.isDone.Load() {
		return nil, p.errClosed()
	}
	i, ok := p.fnIndex[fn]
	if !ok {
		return nil, fmt.Errorf("plugin %s: %q: %w", p.name, fn, ErrNoFunction)
	}
	if err := p.fnErr[i]; err != nil {
		return nil, fmt.Errorf("plugin %s: %q: %w", p.name, fn, err)
	}
	if err := ctx.Err(); err != nil { // rather than an instance stopped at once
		return nil, fmt.Errorf("plugin %s: %s: %w: %w", p.name, fn, ErrTimeout, err)
	}
	in, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	out, reuse, err := in.call(ctx, fn, i, input)
	p.put(in, reuse)
	return out, err
}

// call runs export i (fn) of the instance on input, as the SDK's Plugin.CallWithContext
// does: the kernel reset, the input in a new kernel block, the export's return code, then
// the kernel's error and output. It reports whether the instance may serve another call.
func (in *instance) call(ctx context.Context, fn string, i int, input []byte) (out []byte, reuse bool, err error) {
	p := in.p
	f := in.fns[i]
	if f == nil {
		f = in.main.ExportedFunction(fn)
		in.fns[i] = f
	}
	in.arm(ctx)
	if err := in.setInput(input); err != nil {
		in.disarm()
		return nil, false, fmt.Errorf("plugin %s: %s: %w", p.name, fn, err)
	}
	in.cstack[0] = 0
	callErr := f.CallWithStack(ctx, in.cstack[:])
	stopped := in.disarm()
	var rc uint32
	if p.fnRC[i] {
		rc = uint32(in.cstack[0])
	}
	exited := false
	if callErr != nil {
		if exit := (*sys.ExitError)(nil); errors.As(callErr, &exit) {
			// WASI proc_exit: its code is the return code; wazero closed the module.
			exited, rc, callErr = true, exit.ExitCode(), nil
		}
	}
	reuse = !stopped && !exited
	switch {
	case callErr != nil && stopped:
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("plugin %s: %s: %w: %w", p.name, fn, ErrTimeout, ctx.Err())
		}
		return nil, false, fmt.Errorf("plugin %s: %s: not finished within its timeout (%v): %w", p.name, fn, p.limits.Timeout, ErrTimeout)
	case callErr != nil:
		return nil, false, fmt.Errorf("plugin %s: %s: %w", p.name, fn, in.trapError(callErr))
	}
	msg, err := in.errorMessage()
	if err != nil {
		return nil, false, fmt.Errorf("plugin %s: %s: %w", p.name, fn, in.trapError(err))
	}
	switch {
	case msg != "":
		return nil, reuse, fmt.Errorf("plugin %s: %s: %w: %s", p.name, fn, ErrFailed, clip(msg))
	case rc != 0 && exited:
		return nil, reuse, fmt.Errorf("plugin %s: %s: %w: exited with code %d", p.name, fn, ErrFailed, rc)
	case rc != 0:
		return nil, reuse, fmt.Errorf("plugin %s: %s: %w: returned %d", p.name, fn, ErrFailed, rc)
	}
	out, err = in.output()
	if err != nil {
		if errors.Is(err, ErrLimit) {
			return nil, reuse, fmt.Errorf("plugin %s: %s: %w", p.name, fn, err)
		}
		return nil, false, fmt.Errorf("plugin %s: %s: %w", p.name, fn, in.trapError(err))
	}
	return out, reuse, nil
}

// setInput resets the kernel (freeing the last call's blocks) and puts input in a new block
// as the call's input.
func (in *instance) setInput(input []byte) error {
	if _, err := in.kcall(kReset, 0, 0); err != nil {
		return classify(err)
	}
	in.inOff, in.inLen = 0, 0
	if len(input) == 0 {
		return nil
	}
	n := uint64(len(input))
	off, err := in.kcall(kAlloc, n, 0)
	switch {
	case err != nil:
		return classify(err)
	case off == 0:
		return fmt.Errorf("%w: an input of %d bytes does not fit the Extism kernel's memory (spec.limits.memoryPages)", ErrLimit, n)
	case !in.mem.Write(uint32(off), input):
		return fmt.Errorf("%w: the kernel's block at %d is outside its memory", ErrTrap, off)
	}
	if _, err := in.kcall(kInputSet, off, n); err != nil {
		return classify(err)
	}
	in.inOff, in.inLen = off, n
	return nil
}

// maxErrorMessage bounds the plugin's error message the host reads.
const maxErrorMessage = 4 << 10

// errorMessage returns the error the plugin set (error_set), "" if none.
func (in *instance) errorMessage() (string, error) {
	off, err := in.kcall(kErrorGet, 0, 0)
	if err != nil || off == 0 {
		return "", err
	}
	n, err := in.kcall(kLength, off, 0)
	if err != nil {
		return "", err
	}
	n = min(n, maxErrorMessage)
	b, ok := in.mem.Read(uint32(off), uint32(n))
	if !ok {
		return "", fmt.Errorf("the error's block at %d is outside the kernel's memory", off)
	}
	return string(b), nil
}

// output returns a copy of the call's output, or an ErrLimit beyond MaxOutputBytes (without
// copying it).
func (in *instance) output() ([]byte, error) {
	n, err := in.kcall(kOutputLength, 0, 0)
	if err != nil {
		return nil, err
	}
	if max := in.p.limits.MaxOutputBytes; n > uint64(max) {
		return nil, fmt.Errorf("output of %d bytes, more than the %d allowed: %w", n, max, ErrLimit)
	}
	off, err := in.kcall(kOutputOffset, 0, 0)
	if err != nil {
		return nil, err
	}
	b, ok := in.mem.Read(uint32(off), uint32(n))
	if !ok {
		return nil, fmt.Errorf("the output's block at %d of %d bytes is outside the kernel's memory", off, n)
	}
	return append(make([]byte, 0, n), b...), nil
}

// trapError is the error of a call that trapped: a host function's own (ErrDenied,
// ErrLimit, ErrTimeout, …), or the runtime's, classified; with the plugin's error message
// when it set one before trapping (AssemblyScript's abort does).
func (in *instance) trapError(err error) error {
	var he *hostError
	if errors.As(err, &he) {
		err = fmt.Errorf("%w: %s", he.kind, clip(he.msg))
	} else {
		err = classify(err)
	}
	if msg, e := in.errorMessage(); e == nil && msg != "" {
		err = fmt.Errorf("%w (the plugin's error: %s)", err, clip(msg))
	}
	return err
}

// classify wraps a runtime error in the error callers branch on.
func classify(err error) error {
	s := err.Error()
	switch {
	case strings.Contains(s, "memory") && (strings.Contains(s, "limit") || strings.Contains(s, "out of memory") || strings.Contains(s, "exceeds")):
		return fmt.Errorf("%w: %s", ErrLimit, clip(s))
	}
	return fmt.Errorf("%w: %s", ErrTrap, clip(s))
}

// clip bounds a plugin's message in an error.
func clip(s string) string {
	if len(s) > 512 {
		return s[:512] + "…"
	}
	return s
}

// Close closes the plugin without breaking the calls running. Calls after it, and calls
// waiting for an instance, fail with ErrClosed; idle instances are closed at once; a running
// call finishes normally, and its instance is closed when it returns. The plugin's runtime
// (its compiled module, its kernels, its HTTP connections) is closed once the last running
// call has returned: Close does not wait for that. Callers close a plugin once nothing
// applied names it. Closing again does nothing; Close returns nil.
func (p *Plugin) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return nil
	}
	p.done = true
	p.isDone.Store(true)
	close(p.closing)
	var idle []*instance
	for drained := false; !drained; {
		select {
		case in := <-p.idle:
			idle = append(idle, in)
		default:
			drained = true
		}
	}
	release := p.out == 0
	p.mu.Unlock()
	for _, in := range idle {
		in.close()
		<-p.tokens
	}
	if release {
		p.releaseRuntime(context.WithoutCancel(ctx))
	}
	return nil
}

// releaseRuntime closes the runtime and the HTTP client's connections, once.
func (p *Plugin) releaseRuntime(ctx context.Context) {
	p.releaseOnce.Do(func() {
		p.rt.Close(ctx)
		if p.tr != nil {
			p.tr.CloseIdleConnections()
		}
		close(p.released)
	})
}
