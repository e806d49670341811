package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host/internal/instrument"
)

// instance is one instantiation of a module. It serves one call at a time.
type instance struct {
	m     *module
	mod   api.Module
	mem   api.Memory
	alloc api.Function
	entry map[role]api.Function
	// configureFn is osprey_configure (nil for a module without it: ABI 1.0), and cfg the
	// configuration it was given last (zero: none). See config.go.
	configureFn api.Function
	cfg         guestConfig
	version     uint32 // what osprey_abi_version returned
	bufPtr      uint32 // the input region osprey_alloc last returned
	bufCap      uint32
	stack       [2]uint64
	scratch     []byte // host-side encoding buffer
	stderr      *guestOutput
	// stop is the instrumented module's stop global (nil in the other stop modes); once
	// set, the instance traps at its next loop header and is never used again.
	stop       api.MutableGlobal
	watch      *watch      // sets stop when a call's deadline passes (nil without stop)
	cancelStop func() bool // the context.AfterFunc of a call whose context has no deadline
	poisoned   bool

	// The budget's view (budget.go): what the instance is charged, and the deadline of its
	// last call (nanoseconds since the host's epoch), by which idle instances are evicted
	// least recently used first. Written by the goroutine running the call, read under the
	// pool's mutex once the instance is idle.
	charged int64
	lastDue int64

	// Set for the duration of a call (host functions read them).
	fqn    string
	role   role
	reader engine.FeatureReader
	// inv is the program call's Invocation: its storage and messages (ABI 1.2). The engine
	// gives one to every program call when its state keeps mailboxes, and otherwise to
	// those of features that declare storage; nil: neither.
	inv     *engine.Invocation
	storage []string // the storage names the feature declares (hostfuncs.go)
	held    []byte   // the result slot (ABI §3)
}

// callEnv is what the host functions of one entry-point call need: the feature, and for a
// program its reader of dependencies, its Invocation (storage and messages) and the storage
// names it declares.
type callEnv struct {
	fqn     string
	reader  engine.FeatureReader
	inv     *engine.Invocation
	storage []string
}

func (m *module) newInstance(ctx context.Context) (*instance, error) {
	inst := &instance{m: m, entry: map[role]api.Function{}}
	stdout := &guestOutput{inst: inst, level: slog.LevelInfo, stream: "stdout"}
	inst.stderr = &guestOutput{inst: inst, level: slog.LevelWarn, stream: "stderr"}
	cfg := wazero.NewModuleConfig().
		WithName("").                       // anonymous: a module has many instances
		WithStartFunctions().               // _initialize is called below, under our checks
		WithSysWalltime().                  // clocks …
		WithSysNanotime().                  //
		WithRandSource(newGuestRand(inst)). // … and randomness; no FS, env, args or real sleep
		WithStdout(stdout).
		WithStderr(inst.stderr)
	mod, err := m.rt.r.InstantiateModule(ctx, m.compiled, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: instantiate: %v", ErrModule, err)
	}
	inst.mod = mod
	m.h.instances.Store(mod, inst)
	if g, ok := mod.ExportedGlobal(instrument.StopExport).(api.MutableGlobal); ok {
		inst.stop = g
		inst.watch = newWatch(m.h.epoch, inst.stopNow)
	}
	inst.arm(ctx)
	defer inst.disarm()
	inst.mem = mod.ExportedMemory(abi.ExportMemory)
	inst.alloc = mod.ExportedFunction(abi.ExportAlloc)
	inst.configureFn = mod.ExportedFunction(abi.ExportConfigure)
	for _, r := range []role{roleProgram, roleMiddleware} {
		if f := mod.ExportedFunction(r.export()); f != nil {
			inst.entry[r] = f
		}
	}
	fail := func(err error) (*instance, error) {
		inst.close()
		return nil, err
	}
	initFailed := func(fn string, err error) (*instance, error) {
		if inst.stopped() || ctx.Err() != nil {
			cause := context.Cause(ctx)
			if cause == nil {
				cause = context.DeadlineExceeded
			}
			return fail(fmt.Errorf("%w: %s did not finish in time (stopped: %w)", ErrModule, fn, cause))
		}
		return fail(fmt.Errorf("%w: %s failed: %v%s", ErrModule, fn, firstLine(err.Error()), inst.stderr.tail()))
	}
	if f := mod.ExportedFunction(abi.ExportInitialize); f != nil {
		if _, err := f.Call(ctx); err != nil {
			return initFailed(abi.ExportInitialize, err)
		}
	}
	res, err := mod.ExportedFunction(abi.ExportVersion).Call(ctx)
	if err != nil {
		return initFailed(abi.ExportVersion, err)
	}
	inst.disarm()
	if inst.poisoned { // stopped just as it finished: its next call would trap at once
		return initFailed(abi.ExportVersion, errors.New("stopped"))
	}
	v := uint32(res[0])
	inst.version = v
	if m.version != 0 && v != m.version {
		// What was checked when the module was applied (message calls, §1) must hold for
		// every instance.
		return fail(fmt.Errorf("%w: osprey_abi_version returns %d.%d, but returned %d.%d when the module was applied", ErrModule, abi.VersionMajor(v), abi.VersionMinor(v), abi.VersionMajor(m.version), abi.VersionMinor(m.version)))
	}
	if abi.VersionMajor(v) != abi.Major {
		return fail(fmt.Errorf("%w: ABI version %d.%d is not supported; this host implements %d.x", ErrModule, abi.VersionMajor(v), abi.VersionMinor(v), abi.Major))
	}
	if inst.configureFn != nil && abi.VersionMinor(v) < 1 {
		return fail(fmt.Errorf("%w: exports %s, which ABI 1.1 defines, but osprey_abi_version returns %d.%d", ErrModule, abi.ExportConfigure, abi.VersionMajor(v), abi.VersionMinor(v)))
	}
	for _, imp := range []string{m.storage, m.messages} {
		if imp != "" && abi.VersionMinor(v) < 2 {
			return fail(fmt.Errorf("%w: imports %s.%s, which ABI 1.2 defines, but osprey_abi_version returns %d.%d", ErrModule, abi.HostModule, imp, abi.VersionMajor(v), abi.VersionMinor(v)))
		}
	}
	return inst, nil
}

// arm makes the end of ctx stop the instance's guest code (in the instrumented stop mode;
// wazero's own mode watches ctx itself). A deadline is watched by the instance's watch,
// without allocating; a context that can be cancelled but has no deadline falls back to
// context.AfterFunc. disarm ends it.
func (inst *instance) arm(ctx context.Context) {
	if inst.watch == nil || ctx.Done() == nil {
		return
	}
	if deadline, ok := ctx.Deadline(); ok {
		inst.lastDue = inst.watch.arm(deadline, ctx.Done())
		return
	}
	inst.cancelStop = context.AfterFunc(ctx, inst.stopNow)
	inst.lastDue = int64(time.Since(inst.m.h.epoch)) // for eviction: used now
}

// disarm ends what arm started. If the stop already fired, the instance is poisoned and
// will be discarded: its stop global is set.
func (inst *instance) disarm() {
	if inst.watch == nil {
		return
	}
	if inst.watch.disarm() {
		inst.poisoned = true
	}
	if inst.cancelStop != nil {
		if !inst.cancelStop() {
			inst.poisoned = true
		}
		inst.cancelStop = nil
	}
}

func (inst *instance) stopNow() { inst.stop.Set(1) }

// stopped reports whether the running call was stopped (its deadline passed or its context
// ended): the guest traps at its next check, and host functions refuse to run.
//
// Only the goroutine running the instance's call may ask (it reads cancelStop).
func (inst *instance) stopped() bool {
	if inst.watch == nil {
		return false
	}
	// A deadline's stop is the watch's; a cancellation without a deadline sets the global.
	return inst.watch.stopped() || inst.cancelStop != nil && inst.stop.Get() != 0
}

// idleBytes is what the instance costs while idle: its linear memory as it is, and its
// tables at their most.
func (inst *instance) idleBytes() int64 {
	n := inst.m.ceiling - int64(inst.m.key.pages)*pageSize // tables
	if inst.mem != nil {
		n += int64(inst.mem.Size())
	}
	return n
}

func (inst *instance) close() {
	if inst.watch != nil {
		inst.watch.close()
	}
	inst.m.h.instances.Delete(inst.mod)
	inst.mod.Close(context.Background())
}

// input makes room for n bytes of input in guest memory (ABI §2 "Input").
func (inst *instance) input(ctx context.Context, n int) (uint32, error) {
	if uint32(n) <= inst.bufCap && inst.bufPtr != 0 {
		return inst.bufPtr, nil
	}
	inst.stack[0] = uint64(n)
	if err := inst.alloc.CallWithStack(ctx, inst.stack[:]); err != nil {
		return 0, err
	}
	ptr := uint32(inst.stack[0])
	if ptr == 0 {
		return 0, fmt.Errorf("%w: %s(%d) returned 0", ErrTrap, abi.ExportAlloc, n)
	}
	if _, ok := inst.mem.Read(ptr, uint32(n)); !ok {
		return 0, fmt.Errorf("%w: %s(%d) returned %#x, outside memory", ErrTrap, abi.ExportAlloc, n, ptr)
	}
	inst.bufPtr, inst.bufCap = ptr, uint32(n)
	return ptr, nil
}

// guestError is a failure the guest reported in its response: the instance is fine.
// status is set when the guest answered with its own error status (ErrGuestFailed).
type guestError struct {
	err    error
	status bool
}

func (e guestError) Error() string { return e.err.Error() }
func (e guestError) Unwrap() error { return e.err }

// Is makes a guest's own error status match ErrGuestFailed.
func (e guestError) Is(target error) bool { return e.status && target == ErrGuestFailed }

// begin runs one entry point on an instance from the pool and returns the instance and a
// view of its response in guest memory. env is what the call's host functions see. cfg is
// the configuration of the object the call serves: an instance that has another is given
// cfg first (ABI 1.1; a module without osprey_configure takes none). The caller decodes the
// response, then calls end with the instance and whether it is still healthy. On error
// there is nothing to end.
func (m *module) begin(ctx context.Context, r role, env callEnv, cfg guestConfig, input []byte) (*instance, []byte, error) {
	if len(input) > abi.MaxMessageSize {
		return nil, nil, fmt.Errorf("%w: the call's input is %d bytes encoded, more than the ABI's %d-byte limit (ABI.md §6)", ErrInputTooLarge, len(input), abi.MaxMessageSize)
	}
	inst, err := m.pool.get(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	inst.arm(ctx)
	defer inst.disarm()
	if inst.configureFn != nil && inst.cfg != cfg {
		if err := inst.configure(ctx, cfg); err != nil {
			var refused configRefused
			if errors.As(err, &refused) { // accepted when applied, refused now
				err = fmt.Errorf("%w: %s: %w", ErrTrap, abi.ExportConfigure, refused)
			}
			m.pool.discard(inst)
			return nil, nil, err
		}
	}
	ptr, err := inst.input(ctx, len(input))
	if err != nil {
		err = m.callError(ctx, inst, abi.ExportAlloc, err)
		m.pool.discard(inst)
		return nil, nil, err
	}
	inst.mem.Write(ptr, input)
	inst.fqn, inst.role, inst.reader, inst.inv, inst.storage = env.fqn, r, env.reader, env.inv, env.storage
	inst.stack[0], inst.stack[1] = uint64(ptr), uint64(len(input))
	err = inst.entry[r].CallWithStack(ctx, inst.stack[:])
	inst.fqn, inst.reader, inst.inv, inst.storage, inst.held = "", nil, nil, nil, inst.held[:0]
	if err == nil && inst.stopped() {
		// Its deadline passed (or its caller went away) before it returned — e.g. a host
		// call that refused to run on, which the guest ignored: the call has failed.
		err = errors.New("stopped")
	}
	if err != nil {
		err = m.callError(ctx, inst, r.export(), err)
		m.pool.discard(inst)
		return nil, nil, err
	}
	packed := inst.stack[0]
	outPtr, outLen := uint32(packed>>32), uint32(packed)
	if outLen > abi.MaxMessageSize {
		m.pool.discard(inst)
		return nil, nil, fmt.Errorf("%w: %s returned a response of %d bytes, more than the ABI's %d-byte limit (ABI.md §6)", ErrTrap, r.export(), outLen, abi.MaxMessageSize)
	}
	out, ok := inst.mem.Read(outPtr, outLen)
	if !ok || outLen == 0 {
		m.pool.discard(inst)
		return nil, nil, fmt.Errorf("%w: %s returned a response at %#x (%d bytes), outside memory or empty", ErrTrap, r.export(), outPtr, outLen)
	}
	return inst, out, nil
}

// end returns an instance after its response was decoded. decodeErr is what decoding
// returned: nil or a guestError keep the instance; anything else (a malformed response)
// discards it and is returned as ErrTrap. (A stop that fired between the guest's return and
// here discards the instance; the answer, complete before its deadline, stands.)
func (m *module) end(inst *instance, decodeErr error) error {
	if decodeErr == nil || isGuestError(decodeErr) {
		if inst.poisoned { // stopped just as it finished: the answer stands, the instance goes
			m.pool.discard(inst)
		} else {
			m.pool.put(inst)
		}
		return decodeErr
	}
	m.pool.discard(inst)
	return fmt.Errorf("%w: malformed response: %v", ErrTrap, decodeErr)
}

// isGuestError reports whether err is a guestError. (A function of its own so that the
// successful call, which has no error, does not allocate the target of errors.As.)
func isGuestError(err error) bool {
	var ge guestError
	return errors.As(err, &ge)
}

// callError turns a failed call into an error: the caller's deadline or cancellation when
// that is what stopped the guest, otherwise a trap or an exit, with the guest's last words
// on stderr (a Go panic's message) when there are any.
func (m *module) callError(ctx context.Context, inst *instance, fn string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("%s stopped: %w", fn, ctxErr)
	}
	if inst.stopped() { // the watch saw the deadline pass before the context's own timer did
		return fmt.Errorf("%s stopped: %w", fn, context.DeadlineExceeded)
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		// wazero's own stop reports these codes; a guest could pass them to proc_exit.
		if m.h.cfg.stop == stopWazero {
			switch exit.ExitCode() {
			case sys.ExitCodeDeadlineExceeded:
				return fmt.Errorf("%s stopped: %w", fn, context.DeadlineExceeded)
			case sys.ExitCodeContextCanceled:
				return fmt.Errorf("%s stopped: %w", fn, context.Canceled)
			}
		}
		return fmt.Errorf("%w: %s: the guest exited with code %d%s", ErrTrap, fn, exit.ExitCode(), inst.stderr.tail())
	}
	if errors.Is(err, ErrTrap) || errors.Is(err, ErrModule) {
		return err
	}
	return fmt.Errorf("%w: %s: %v%s", ErrTrap, fn, firstLine(err.Error()), inst.stderr.tail())
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
