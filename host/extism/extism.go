// Package extism hosts third-party Extism plugins (github.com/extism/go-sdk) under the
// host's sandbox rules: a module is checked against the host's structural limits before it
// is compiled, compiled once, and run from a pool of instances (an Extism instance is not
// safe for concurrent calls); every call is bounded by a timeout (wazero closes a call's
// instance when its context ends, and the instance is then discarded), memory is capped in
// pages, HTTP goes only to the hosts the plugin declared and the operator's Policy allows,
// response and output sizes are capped, there is no filesystem and no environment, and the
// plugin's log lines are rate-limited and marked as the plugin's.
//
// The roles plugins play (middleware, encoder, connector) and their JSON contracts are the
// callers' concern; this package runs functions on bytes.
package extism

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"

	extism "github.com/extism/go-sdk"
	"github.com/gobwas/glob"
	"github.com/tetratelabs/wazero"
	"golang.org/x/time/rate"

	"github.com/osprey-ml/osprey/host"
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
	// ErrLimit: the call exceeded a limit: its memory, its output size.
	ErrLimit = errors.New("plugin exceeded a limit")
	// ErrDenied: the plugin asked for what the operator's Policy does not allow (at load)
	// or called a host it did not declare.
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
	if _, err := glob.Compile(h); err != nil { // the SDK compiles it on every request
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
	name     string
	limits   Limits
	compiled *extism.CompiledPlugin
	log      *slog.Logger
	logs     *rate.Limiter

	slots chan struct{} // one token per instance that may exist
	mu    sync.Mutex
	idle  []*extism.Plugin
	done  bool
}

// Load checks s against the policy and the structural limits, compiles it, and checks that
// it exports the functions it declares (instantiating one instance, kept for the first
// call). ctx bounds the compile.
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
	m := extism.Manifest{
		Wasm:         []extism.Wasm{extism.WasmData{Data: s.Module, Name: "main"}},
		Memory:       &extism.ManifestMemory{MaxPages: l.MemoryPages, MaxHttpResponseBytes: l.MaxHTTPResponseBytes, MaxVarBytes: 64 << 10},
		Config:       s.Config,
		AllowedHosts: s.AllowedHosts,
		Timeout:      uint64(l.Timeout.Milliseconds()),
	}
	if m.Timeout == 0 {
		m.Timeout = 1
	}
	if m.AllowedHosts == nil {
		m.AllowedHosts = []string{} // deny all
	}
	// WASI for the PDKs that need it (clocks, random); no filesystem, environment or
	// arguments: wazero's WASI grants nothing its module config does not.
	compiled, err := extism.NewCompiledPlugin(ctx, m, extism.PluginConfig{
		EnableWasi:    true,
		RuntimeConfig: wazero.NewRuntimeConfig().WithCloseOnContextDone(true).WithMemoryLimitPages(l.MemoryPages),
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: compile: %w", s.Name, err)
	}
	instances := p.Instances
	if instances <= 0 {
		instances = DefaultPolicy.Instances
	}
	pl := &Plugin{name: s.Name, limits: l, compiled: compiled, log: log.With(slog.String("plugin", s.Name)),
		logs: rate.NewLimiter(10, 20), slots: make(chan struct{}, instances)}
	inst, err := pl.newInstance(ctx)
	if err != nil {
		compiled.Close(ctx)
		return nil, err
	}
	for _, fn := range s.Functions {
		if !inst.FunctionExists(fn) {
			inst.Close(ctx)
			compiled.Close(ctx)
			return nil, fmt.Errorf("plugin %s: spec.functions: %q: %w", s.Name, fn, ErrNoFunction)
		}
	}
	pl.slots <- struct{}{}
	pl.idle = append(pl.idle, inst)
	return pl, nil
}

// Name returns the plugin's name.
func (p *Plugin) Name() string { return p.name }

// newInstance instantiates the plugin, bounded by its timeout: a start function runs then,
// and one that does not end is closed with the context.
func (p *Plugin) newInstance(ctx context.Context) (*extism.Plugin, error) {
	ictx, cancel := context.WithTimeout(ctx, p.limits.Timeout)
	defer cancel()
	inst, err := p.compiled.Instance(ictx, extism.PluginInstanceConfig{ModuleConfig: wazero.NewModuleConfig()})
	if err != nil && ictx.Err() != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("plugin %s: instantiate: not finished within its timeout (%v): %w", p.name, p.limits.Timeout, ErrTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("plugin %s: instantiate: %w", p.name, classify(err))
	}
	inst.SetLogger(p.guestLog)
	return inst, nil
}

// maxLogLine bounds a plugin's log line.
const maxLogLine = 1024

// guestLog logs a plugin's line, rate-limited, marked as the plugin's, its control
// characters escaped so that it cannot read as a line of the host's.
func (p *Plugin) guestLog(level extism.LogLevel, msg string) {
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
	case extism.LogLevelError:
		lv = slog.LevelError
	case extism.LogLevelWarn:
		lv = slog.LevelWarn
	case extism.LogLevelDebug, extism.LogLevelTrace:
		lv = slog.LevelDebug
	}
	p.log.LogAttrs(context.Background(), lv, "plugin log", slog.String("line", msg))
}

// get takes an idle instance, or makes one while fewer than the policy's exist, or waits.
func (p *Plugin) get(ctx context.Context) (*extism.Plugin, error) {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return nil, fmt.Errorf("plugin %s: %w", p.name, ErrClosed)
	}
	if n := len(p.idle); n > 0 {
		inst := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return inst, nil
	}
	p.mu.Unlock()
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("plugin %s: waiting for an instance: %w: %w", p.name, ErrTimeout, ctx.Err())
	}
	inst, err := p.newInstance(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return inst, nil
}

// put returns an instance to the pool, or discards it (closed by a timeout, trapped).
func (p *Plugin) put(ctx context.Context, inst *extism.Plugin, reuse bool) {
	p.mu.Lock()
	if reuse && !p.done {
		p.idle = append(p.idle, inst)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	inst.Close(context.WithoutCancel(ctx))
	<-p.slots
}

// Call runs fn on input and returns its output. The call is bounded by the plugin's timeout
// and ctx; its errors wrap ErrFailed, ErrTrap, ErrTimeout, ErrLimit, ErrNoFunction or
// ErrClosed and name the plugin and the function.
func (p *Plugin) Call(ctx context.Context, fn string, input []byte) ([]byte, error) {
	inst, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, p.limits.Timeout)
	defer cancel()
	rc, out, err := inst.CallWithContext(cctx, fn, input)
	switch {
	case err == nil && rc == 0:
		p.put(ctx, inst, true)
		if int64(len(out)) > p.limits.MaxOutputBytes {
			return nil, fmt.Errorf("plugin %s: %s: output of %d bytes, more than the %d allowed: %w", p.name, fn, len(out), p.limits.MaxOutputBytes, ErrLimit)
		}
		return out, nil
	case cctx.Err() != nil:
		p.put(ctx, inst, false) // wazero closed it
		if ctx.Err() != nil {
			return nil, fmt.Errorf("plugin %s: %s: %w: %w", p.name, fn, ErrTimeout, ctx.Err())
		}
		return nil, fmt.Errorf("plugin %s: %s: not finished within its timeout (%v): %w", p.name, fn, p.limits.Timeout, ErrTimeout)
	case err != nil && strings.HasPrefix(err.Error(), "unknown function"):
		p.put(ctx, inst, true)
		return nil, fmt.Errorf("plugin %s: %q: %w", p.name, fn, ErrNoFunction)
	case err != nil && rc != 0 && !isTrap(err):
		// The plugin's own error (error_set): the instance is sound.
		p.put(ctx, inst, true)
		return nil, fmt.Errorf("plugin %s: %s: %w: %s", p.name, fn, ErrFailed, clip(err.Error()))
	case err == nil:
		p.put(ctx, inst, true)
		return nil, fmt.Errorf("plugin %s: %s: %w: returned %d", p.name, fn, ErrFailed, rc)
	default:
		p.put(ctx, inst, false)
		return nil, fmt.Errorf("plugin %s: %s: %w", p.name, fn, classify(err))
	}
}

// isTrap reports whether err is a trap or a host function's panic rather than the plugin's
// own error message.
func isTrap(err error) bool {
	s := err.Error()
	for _, trap := range []string{"wasm error:", "wasm stack trace", "stack overflow", "unreachable", "out of bounds",
		"divide by zero", "integer overflow", "invalid table access", "indirect call type mismatch", "panic",
		"is not allowed", "module closed", "recovered by wazero"} {
		if strings.Contains(s, trap) {
			return true
		}
	}
	return false
}

// classify wraps an SDK or runtime error in the error callers branch on.
func classify(err error) error {
	s := err.Error()
	switch {
	case strings.Contains(s, "is not allowed"):
		return fmt.Errorf("%w: %s", ErrDenied, clip(s))
	case strings.Contains(s, "memory") && (strings.Contains(s, "limit") || strings.Contains(s, "out of memory") || strings.Contains(s, "exceeds")):
		return fmt.Errorf("%w: %s", ErrLimit, clip(s))
	case strings.Contains(s, "http: request body too large"):
		return fmt.Errorf("%w: HTTP response larger than allowed: %s", ErrLimit, clip(s))
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

// Close closes the plugin and its instances: calls after it fail with ErrClosed, and calls
// running are ended (they fail). Callers release a plugin once nothing applied names it.
func (p *Plugin) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return nil
	}
	p.done = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, inst := range idle {
		inst.Close(ctx)
	}
	return p.compiled.Close(ctx)
}
