package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/host/internal/instrument"
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
	digest string
	pages  uint32
}

// module is a compiled, checked module and its pool of instances.
type module struct {
	h        *Host
	key      moduleKey
	compiled wazero.CompiledModule
	rt       *runtimeForLimit
	pool     *pool
	exports  map[string]bool // the entry points it has
}

// load returns the compiled module a reference names, compiling and checking it the first
// time, and checks that it can play role.
func (h *Host) load(ctx context.Context, ref string, pages uint32, r role) (*module, error) {
	b, err := h.moduleBytes(ref)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	key := moduleKey{digest: hex.EncodeToString(sum[:]), pages: pages}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("host closed")
	}
	m, ok := h.modules[key]
	if !ok {
		if m, err = h.compile(ctx, key, b); err != nil {
			return nil, err
		}
		h.modules[key] = m
	}
	if !m.exports[r.export()] {
		return nil, fmt.Errorf("%w: missing export %s (a module used as a %s must export it; see abi/ABI.md §2)", ErrModule, r.export(), map[role]string{roleProgram: "program", roleMiddleware: "middleware"}[r])
	}
	return m, nil
}

// compile compiles b, checks its imports and exports, and instantiates it once to run
// _initialize and check its ABI version. Callers hold h.mu.
func (h *Host) compile(ctx context.Context, key moduleKey, b []byte) (*module, error) {
	rt, err := h.runtimeFor(ctx, key.pages)
	if err != nil {
		return nil, err
	}
	if h.cfg.stop == stopInstrument {
		res, err := instrument.Instrument(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrModule, err)
		}
		b = res.Wasm
	}
	compiled, err := rt.r.CompileModule(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("%w: does not compile: %v", ErrModule, err)
	}
	m := &module{h: h, key: key, compiled: compiled, rt: rt}
	if err := m.check(); err != nil {
		compiled.Close(ctx)
		return nil, err
	}
	m.pool = newPool(m, h.cfg.maxInstances)
	ictx, cancel := context.WithTimeout(ctx, h.cfg.initTimeout)
	defer cancel()
	inst, err := m.newInstance(ictx)
	if err != nil {
		compiled.Close(ctx)
		return nil, err
	}
	m.pool.idle = append(m.pool.idle, inst)
	h.log.LogAttrs(ctx, slog.LevelDebug, "module compiled", slog.String("digest", key.digest[:12]), slog.Uint64("memory_pages", uint64(key.pages)))
	return m, nil
}

// hostImports are the osprey imports and their signatures (ABI.md §3).
var hostImports = map[string][2][]api.ValueType{
	abi.ImportGetFeature: {{i32, i32, i32, i32, i32, i32}, {i32}},
	abi.ImportResult:     {{i32, i32}, {i32}},
	abi.ImportLog:        {{i32, i32, i32, i32, i32}, nil},
	abi.ImportNow:        {nil, {i64}},
}

// entryPoints are the exports and their signatures (ABI.md §2).
var entryPoints = map[string][2][]api.ValueType{
	abi.ExportVersion:    {nil, {i32}},
	abi.ExportAlloc:      {{i32}, {i32}},
	abi.ExportProgram:    {{i32, i32}, {i64}},
	abi.ExportMiddleware: {{i32, i32}, {i64}},
	abi.ExportInitialize: {nil, nil},
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
				return fmt.Errorf("%w: imports %s.%s, which the host does not provide (it provides get_feature, result, log, now)", ErrModule, mod, name)
			}
			if !sameTypes(def.ParamTypes(), sig[0]) || !sameTypes(def.ResultTypes(), sig[1]) {
				return fmt.Errorf("%w: imports %s.%s with signature %s, want %s", ErrModule, mod, name, sigString(def.ParamTypes(), def.ResultTypes()), sigString(sig[0], sig[1]))
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
type pool struct {
	m   *module
	sem chan struct{}

	mu     sync.Mutex
	idle   []*instance
	closed bool
}

func newPool(m *module, max int) *pool {
	p := &pool{m: m, sem: make(chan struct{}, max)}
	return p
}

// get returns an idle instance or a new one; it waits, within ctx, while max are busy.
func (p *pool) get(ctx context.Context) (*instance, error) {
	select {
	case p.sem <- struct{}{}: // a slot is free: the common case, without select's cost
	default:
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for an instance (all %d busy): %w", cap(p.sem), ctx.Err())
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return nil, fmt.Errorf("host closed")
	}
	if n := len(p.idle); n > 0 {
		inst := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return inst, nil
	}
	p.mu.Unlock()
	inst, err := p.m.newInstance(ctx)
	if err != nil {
		<-p.sem
		return nil, err
	}
	return inst, nil
}

// put returns a healthy instance to the pool.
func (p *pool) put(inst *instance) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		inst.close()
	} else {
		p.idle = append(p.idle, inst)
		p.mu.Unlock()
	}
	<-p.sem
}

// discard closes an instance that trapped, timed out or broke the protocol.
func (p *pool) discard(inst *instance) {
	inst.close()
	<-p.sem
}

func (p *pool) close(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, inst := range p.idle {
		inst.close()
	}
	p.idle = nil
	p.m.compiled.Close(ctx)
}
