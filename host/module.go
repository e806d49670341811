package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/host/internal/instrument"
	"github.com/osprey-ml/osprey/internal/moduleref"
)

// role is what a module is used as.
type role int

const (
	roleProgram role = iota
	roleMiddleware
)

func (r role) export() string {
	if r == roleMiddleware {
		return abi.ExportMiddleware
	}
	return abi.ExportProgram
}

// moduleKey identifies a compiled module: its content and the memory limit it runs under.
type moduleKey struct {
	digest string // hex SHA-256 of the module's bytes (the reference without "sha256:")
	pages  uint32
}

func (k moduleKey) ref() string { return moduleref.FromHex(k.digest) }

// module is a compiled, checked module and its pool of instances. It is created, not yet
// ready, when its first load starts compiling it; ready is closed when the compile ended,
// with err set if it failed.
type module struct {
	h        *Host
	key      moduleKey
	ready    chan struct{}
	err      error
	compiled wazero.CompiledModule
	rt       *runtimeForLimit
	pool     *pool
	exports  map[string]bool // the entry points it has
	storage  string          // the first storage import it has (ABI 1.2), or ""
	messages string          // the first message import it has (ABI 1.2), or ""
	version  uint32          // what osprey_abi_version returned when the module was checked
	ceiling  int64           // the most memory one instance may have: linear memory and tables
	floor    bool            // the budget holds one ceiling for it (released with it)
}

// errAbandoned: a compile stopped because the load that started it was given up (its
// context ended). Another load of the same module compiles it again.
var errAbandoned = errors.New("compile abandoned")

// load returns the compiled module a reference names, compiling and checking it the first
// time, and checks that it can play role. Compiling holds no lock that other loads need:
// loads of other modules proceed, and loads of the same module wait for the one compile
// (within their own contexts).
func (h *Host) load(ctx context.Context, ref string, pages uint32, r role) (*module, error) {
	b, err := h.moduleBytes(ref)
	if err != nil {
		return nil, err
	}
	key := moduleKey{digest: moduleref.Digest(ref), pages: pages}
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, errHostClosed
		}
		m, ok := h.modules[key]
		if !ok {
			m = &module{h: h, key: key, ready: make(chan struct{})}
			h.modules[key] = m
			h.mu.Unlock()
			m.err = h.compile(ctx, m, b)
			if m.err != nil {
				h.mu.Lock()
				if h.modules[key] == m {
					delete(h.modules, key)
				}
				h.mu.Unlock()
			}
			close(m.ready)
		} else {
			h.mu.Unlock()
		}
		select {
		case <-m.ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the module to compile: %w", ctx.Err())
		}
		if m.err != nil {
			if errors.Is(m.err, errAbandoned) && ctx.Err() == nil {
				continue // the load that compiled it gave up; this one has time left
			}
			return nil, m.err
		}
		if !m.exports[r.export()] {
			return nil, fmt.Errorf("%w: missing export %s (a module used as a %s must export it; see abi/ABI.md §2)", ErrModule, r.export(), map[role]string{roleProgram: "program", roleMiddleware: "middleware"}[r])
		}
		if r == roleMiddleware && m.storage != "" {
			return nil, fmt.Errorf("%w: imports %s.%s, but storage is a program's: a middleware has no address to keep it for (see abi/ABI.md §4.5)", ErrModule, abi.HostModule, m.storage)
		}
		if r == roleMiddleware && m.messages != "" {
			return nil, fmt.Errorf("%w: imports %s.%s, but messages are a program's: a middleware has no address to send them from (see abi/ABI.md §4.6)", ErrModule, abi.HostModule, m.messages)
		}
		return m, nil
	}
}

// compile instruments and compiles b, checks its imports and exports, reserves its floor in
// the budget, and instantiates it once to run _initialize and check its ABI version. At
// most maxCompiles compile at once; a compile stops between its steps once ctx ends.
func (h *Host) compile(ctx context.Context, m *module, b []byte) (err error) {
	select {
	case h.compiles <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting to compile: %w", errAbandoned, ctx.Err())
	}
	defer func() { <-h.compiles }()
	defer func() {
		// A compile that failed because its own caller gave up says so, so that other loads
		// waiting for it compile again rather than take its caller's error.
		if err != nil && ctx.Err() != nil && !errors.Is(err, errAbandoned) {
			err = fmt.Errorf("%w: %w", errAbandoned, err)
		}
	}()
	abandoned := func() error {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", errAbandoned, ctx.Err())
		}
		return nil
	}
	rt, err := h.runtimeFor(ctx, m.key.pages)
	if err != nil {
		return err
	}
	m.rt = rt
	m.ceiling = int64(m.key.pages) * pageSize
	if h.cfg.stop == stopInstrument {
		res, err := instrument.Instrument(b, h.cfg.structure.instrumentLimits())
		if err != nil {
			return fmt.Errorf("%w: %v", ErrModule, err)
		}
		for _, imp := range res.Imports {
			if imp.Kind != 0 {
				return fmt.Errorf("%w: forbidden import of %s %s.%s (a guest may import only functions, from %q and %q)", ErrModule, instrument.KindName(imp.Kind), imp.Module, imp.Name, abi.HostModule, abi.WASIModule)
			}
		}
		// Per instance: tables at their most, element segments, globals.
		m.ceiling += int64(res.TableEntries)*tableEntryBytes + int64(res.Stats.ElementEntries)*tableEntryBytes +
			int64(res.Stats.Globals)*globalBytes
		b = res.Wasm
	}
	if err := abandoned(); err != nil {
		return err
	}
	start := time.Now()
	compiled, err := rt.r.CompileModule(ctx, b)
	h.compileCount.Add(1)
	h.compileNanos.Add(int64(time.Since(start)))
	if err != nil {
		return fmt.Errorf("%w: does not compile: %v", ErrModule, err)
	}
	m.compiled = compiled
	defer func() {
		if err != nil {
			m.release(context.WithoutCancel(ctx))
		}
	}()
	if err := m.check(); err != nil {
		return err
	}
	if err := abandoned(); err != nil {
		return err
	}
	if err := h.budget.reserveFloor(m.ceiling); err != nil {
		return err
	}
	m.floor = true
	m.pool = newPool(m, h.cfg.maxInstances)
	ictx, cancel := context.WithTimeout(ctx, h.cfg.initTimeout)
	defer cancel()
	inst, err := m.pool.get(ictx, guestConfig{})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("%w: instantiating it took longer than %v (_initialize or osprey_abi_version overran): %v", ErrModule, h.cfg.initTimeout, err)
		}
		return err
	}
	m.version = inst.version // read by loads once ready is closed
	m.pool.put(inst)
	h.log.LogAttrs(ctx, slog.LevelDebug, "module compiled", slog.String("digest", m.key.digest[:min(12, len(m.key.digest))]), slog.Uint64("memory_pages", uint64(m.key.pages)))
	return nil
}

// release closes the module's pool (idle instances now, busy ones when they return), gives
// back its floor and closes its compiled code. Calls still holding the module fail.
func (m *module) release(ctx context.Context) {
	if m.pool != nil {
		m.pool.close()
	}
	if m.floor {
		m.h.budget.releaseFloor(m.ceiling)
		m.floor = false
	}
	if m.compiled != nil {
		m.compiled.Close(ctx)
	}
}

// What wazero keeps per instance for one table or element entry (a reference: one pointer)
// and for one global (an object; ~150 bytes measured).
const (
	tableEntryBytes = 8
	globalBytes     = 160
)

// hostImports are the osprey imports and their signatures (ABI.md §3).
var hostImports = map[string][2][]api.ValueType{
	abi.ImportGetFeature: {{i32, i32, i32, i32, i32, i32}, {i32}},
	abi.ImportResult:     {{i32, i32}, {i32}},
	abi.ImportLog:        {{i32, i32, i32, i32, i32}, nil},
	abi.ImportNow:        {nil, {i64}},
	// ABI 1.2 (ABI.md §4.5): a program's storage.
	abi.ImportStorageGet:   {{i32, i32, i32, i32}, {i32}},
	abi.ImportStorageSet:   {{i32, i32, i32, i32}, {i32}},
	abi.ImportStorageClear: {{i32, i32}, {i32}},
	// ABI 1.2 (ABI.md §4.6): a program's messages.
	abi.ImportSend:      {{i32, i32, i32, i32, i32, i32}, {i32}},
	abi.ImportSendAfter: {{i64, i32, i32, i32, i32, i32, i32, i32, i32}, {i32}},
	abi.ImportCancel:    {{i32, i32}, {i32}},
	abi.ImportEgress:    {{i32, i32, i32, i32}, {i32}},
}

// hostImportNames lists hostImports, sorted, for messages.
var hostImportNames = func() string {
	names := make([]string, 0, len(hostImports))
	for name := range hostImports {
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}()

// entryPoints are the exports and their signatures (ABI.md §2).
var entryPoints = map[string][2][]api.ValueType{
	abi.ExportVersion:    {nil, {i32}},
	abi.ExportAlloc:      {{i32}, {i32}},
	abi.ExportProgram:    {{i32, i32}, {i64}},
	abi.ExportMiddleware: {{i32, i32}, {i64}},
	abi.ExportInitialize: {nil, nil},
	abi.ExportConfigure:  {{i32, i32}, {i64}}, // ABI 1.1, optional
}

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func sigString(params, results []api.ValueType) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return names(params) + " -> " + names(results)
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// check enforces the ABI's rules on imports and exports.
func (m *module) check() error {
	wasi := m.rt.r.Module(abi.WASIModule).ExportedFunctionDefinitions()
	var imports []string
	for _, def := range m.compiled.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch mod {
		case abi.HostModule:
			sig, ok := hostImports[name]
			if !ok {
				return fmt.Errorf("%w: imports %s.%s, which the host does not provide (it provides %s)", ErrModule, mod, name, hostImportNames)
			}
			if !sameTypes(def.ParamTypes(), sig[0]) || !sameTypes(def.ResultTypes(), sig[1]) {
				return fmt.Errorf("%w: imports %s.%s with signature %s, want %s", ErrModule, mod, name, sigString(def.ParamTypes(), def.ResultTypes()), sigString(sig[0], sig[1]))
			}
			if abi.IsStorageImport(name) && m.storage == "" {
				m.storage = name
			}
			if abi.IsMessageImport(name) && m.messages == "" {
				m.messages = name
			}
		case abi.WASIModule:
			if _, ok := wasi[name]; !ok {
				return fmt.Errorf("%w: imports %s.%s, which is not a WASI preview 1 function", ErrModule, mod, name)
			}
		default:
			imports = append(imports, mod+"."+name)
		}
	}
	if len(imports) > 0 {
		sort.Strings(imports)
		return fmt.Errorf("%w: forbidden import %s (a guest may import only from %q and %q)", ErrModule, strings.Join(imports, ", "), abi.HostModule, abi.WASIModule)
	}
	for _, def := range m.compiled.ImportedMemories() {
		mod, name, _ := def.Import()
		return fmt.Errorf("%w: forbidden import of memory %s.%s (a guest exports its own memory)", ErrModule, mod, name)
	}
	if _, ok := m.compiled.ExportedMemories()[abi.ExportMemory]; !ok {
		return fmt.Errorf("%w: missing export %s (the guest's linear memory)", ErrModule, abi.ExportMemory)
	}
	exports := m.compiled.ExportedFunctions()
	m.exports = map[string]bool{}
	for name, sig := range entryPoints {
		def, ok := exports[name]
		if !ok {
			continue
		}
		if !sameTypes(def.ParamTypes(), sig[0]) || !sameTypes(def.ResultTypes(), sig[1]) {
			return fmt.Errorf("%w: export %s has signature %s, want %s", ErrModule, name, sigString(def.ParamTypes(), def.ResultTypes()), sigString(sig[0], sig[1]))
		}
		m.exports[name] = true
	}
	for _, name := range []string{abi.ExportVersion, abi.ExportAlloc} {
		if !m.exports[name] {
			return fmt.Errorf("%w: missing export %s (see abi/ABI.md §2)", ErrModule, name)
		}
	}
	if !m.exports[abi.ExportProgram] && !m.exports[abi.ExportMiddleware] {
		return fmt.Errorf("%w: missing export: neither %s nor %s", ErrModule, abi.ExportProgram, abi.ExportMiddleware)
	}
	return nil
}

// pool holds a module's instances: at most max exist at once; idle ones wait for calls.
// Every instance is charged to the host's budget (budget.go): its ceiling while it serves a
// call, and while it is idle until the budget lowers it to its actual memory.
type pool struct {
	m   *module
	sem chan struct{}

	mu     sync.Mutex
	idle   []*instance
	closed bool
}

func newPool(m *module, max int) *pool {
	return &pool{m: m, sem: make(chan struct{}, max)}
}

// errReleased: a call reached a module that was released (its feature was replaced or
// deleted while the call was on its way).
var errReleased = fmt.Errorf("%w: the module was released (its feature was replaced or deleted)", ErrModuleNotFound)

// get returns an idle instance or a new one; it waits, within ctx, while max are busy. Of
// the idle instances it prefers the most recently used one configured with cfg (when the
// module takes configuration), so that objects sharing a module with different
// configurations seldom re-deliver theirs; otherwise the most recently used.
func (p *pool) get(ctx context.Context, cfg guestConfig) (*instance, error) {
	select {
	case p.sem <- struct{}{}: // a slot is free: the common case, without select's cost
	default:
		p.m.h.waits.Add(1)
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for an instance (all %d busy): %w", cap(p.sem), ctx.Err())
		}
	}
	b := p.m.h.budget
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, errReleased
	}
	if n := len(p.idle); n > 0 {
		i := n - 1
		if p.idle[i].cfg != cfg && p.idle[i].configureFn != nil {
			for j := i - 1; j >= 0; j-- {
				if p.idle[j].cfg == cfg {
					i = j
					break
				}
			}
		}
		inst := p.idle[i]
		if i == n-1 {
			p.idle = p.idle[:i]
		} else {
			p.idle = slices.Delete(p.idle, i, i+1)
		}
		p.mu.Unlock()
		if d := p.m.ceiling - inst.charged; d > 0 {
			if err := b.charge(d, inst); err != nil {
				p.discard(inst)
				return nil, err
			}
			inst.charged = p.m.ceiling
		}
		return inst, nil
	}
	p.mu.Unlock()
	if err := b.charge(p.m.ceiling, nil); err != nil {
		<-p.sem
		return nil, err
	}
	inst, err := p.m.newInstance(ctx)
	if err != nil {
		b.charge(-p.m.ceiling, nil)
		<-p.sem
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed { // released while it instantiated: not the module's fault
			return nil, errReleased
		}
		return nil, err
	}
	inst.charged = p.m.ceiling
	return inst, nil
}

// put returns a healthy instance to the pool. It stays charged at its ceiling until the
// budget needs the room (budget.charge lowers idle instances to their actual memory first).
func (p *pool) put(inst *instance) {
	if inst.poisoned { // its stop fired: it would trap at its next check
		p.discard(inst)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.drop(inst)
	} else {
		p.idle = append(p.idle, inst)
		p.mu.Unlock()
	}
	<-p.sem
}

// discard closes an instance that trapped, timed out or broke the protocol.
func (p *pool) discard(inst *instance) {
	p.drop(inst)
	<-p.sem
}

// drop closes an instance and gives back its charge.
func (p *pool) drop(inst *instance) {
	inst.close()
	p.m.h.budget.charge(-inst.charged, nil)
	inst.charged = 0
}

// evict closes inst if it is still idle in the pool (the budget needs its memory).
func (p *pool) evict(inst *instance) {
	p.mu.Lock()
	i := slices.Index(p.idle, inst)
	if i >= 0 {
		p.idle = slices.Delete(p.idle, i, i+1)
	}
	p.mu.Unlock()
	if i >= 0 {
		p.drop(inst)
	}
}

// close closes the idle instances; busy ones are closed when they come back.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, inst := range idle {
		p.drop(inst)
	}
}
