package extism

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"math"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The Extism kernel: a small Wasm module (Extism's runtime/src/extism.rs, built to Wasm) that
// owns a plugin instance's second memory — the blocks holding the call's input, output,
// error and everything host and plugin exchange — with its allocator. Plugins reach it only
// through the host: they import the "extism:host/env" functions, which the host implements,
// forwarding the kernel's to the kernel instance of the calling plugin instance
// (EIP-007, https://github.com/extism/proposals/blob/main/EIP-007-extism-runtime-kernel.md).
//
// The kernel bytes and their version file are copied unmodified from
// github.com/extism/go-sdk v1.7.1 (BSD 3-Clause; extism-runtime.LICENSE), whose host.go
// defines the host functions reproduced here.

//go:embed extism-runtime.wasm
var kernelWasm []byte

// kernelVersion is the version of the embedded Extism kernel (extism-runtime.wasm).
//
//go:embed extism-runtime.wasm.version
var kernelVersion string

// kernelPages is the kernel memory's initial size, in pages: a plugin's memory limit must
// allow it.
const kernelPages = 16

// envModule is the module plugins import the host functions from.
const envModule = "extism:host/env"

// The kernel's exports the host calls, by index in instance.k.
const (
	kAlloc = iota
	kFree
	kLength
	kLengthUnsafe
	kInputSet
	kOutputSet
	kInputLength
	kInputOffset
	kOutputLength
	kOutputOffset
	kReset
	kErrorSet
	kErrorGet
	kMemoryBytes
	kernelFuncs
)

var kernelExports = [kernelFuncs]string{
	kAlloc: "alloc", kFree: "free", kLength: "length", kLengthUnsafe: "length_unsafe",
	kInputSet: "input_set", kOutputSet: "output_set", kInputLength: "input_length", kInputOffset: "input_offset",
	kOutputLength: "output_length", kOutputOffset: "output_offset", kReset: "reset",
	kErrorSet: "error_set", kErrorGet: "error_get", kMemoryBytes: "memory_bytes",
}

// kernelHeader is the size of the kernel's own header at the start of its memory: its
// load and store functions refuse addresses below it.
const kernelHeader = 64

// Extism log levels, as get_log_level reports them (the SDK's LogLevel.ExtismCompat).
const (
	logTrace int32 = iota
	logDebug
	logInfo
	logWarn
	logError
	logOff int32 = math.MaxInt32
)

// varEntryOverhead is what the SDK charges each plugin variable on top of its name and
// value (a string header and a slice header), kept so that the limit means what the SDK's
// MaxVarBytes meant.
const varEntryOverhead = int(unsafe.Sizeof("") + unsafe.Sizeof([]byte(nil)))

// maxVarBytes bounds the variables (var_set) of one plugin instance: names and values,
// plus varEntryOverhead each.
const maxVarBytes = 64 << 10

// kcall calls a kernel function from the host (outside a host function). The kernel is
// the host's own code, not instrumented: its loops are bounded by its memory.
func (in *instance) kcall(f int, a, b uint64) (uint64, error) {
	in.kstack[0], in.kstack[1] = a, b
	err := in.k[f].CallWithStack(context.Background(), in.kstack[:])
	return in.kstack[0], err
}

// kmust calls a kernel function from a host function: its failure traps the plugin.
func (in *instance) kmust(f int, a, b uint64) uint64 {
	v, err := in.kcall(f, a, b)
	if err != nil {
		panic(err)
	}
	return v
}

// block returns a view of the kernel block at off (nil when off is no block), valid until
// the kernel's memory next changes.
func (in *instance) block(off uint64) []byte {
	n := in.kmust(kLength, off, 0)
	if n == 0 {
		return nil
	}
	if off > math.MaxUint32 || n > math.MaxUint32 {
		panic(fmt.Errorf("kernel block at %d of %d bytes is outside the kernel's memory", off, n))
	}
	b, ok := in.mem.Read(uint32(off), uint32(n))
	if !ok {
		panic(fmt.Errorf("kernel block at %d of %d bytes is outside the kernel's memory", off, n))
	}
	return b
}

// write copies b into a new kernel block and returns its offset (0 for no bytes).
func (in *instance) write(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	off := in.kmust(kAlloc, uint64(len(b)), 0)
	if off == 0 {
		panic(&hostError{kind: ErrLimit, msg: fmt.Sprintf("the Extism kernel's memory cannot hold %d bytes more (spec.limits.memoryPages)", len(b))})
	}
	if !in.mem.Write(uint32(off), b) {
		panic(fmt.Errorf("kernel block at %d of %d bytes is outside the kernel's memory", off, len(b)))
	}
	return off
}

// refreshInput reads the kernel's input back after input_set or reset.
func (in *instance) refreshInput() {
	in.inOff = in.kmust(kInputOffset, 0, 0)
	in.inLen = in.kmust(kInputLength, 0, 0)
}

// kernelMemoryCheck is the kernel's test of an address its load and store functions use:
// off (the last byte's address for the 8-byte ones) at or past its header and at most the
// memory's size; outside, loads return 0 and stores do nothing. (The kernel then accesses
// the memory; at exactly its size that traps, as it does here.)
func (in *instance) kernelMemoryCheck(last uint64) bool {
	return last >= kernelHeader && last <= uint64(in.mem.Size())
}

// hostError is a host function's failure that callers branch on: the call fails with kind.
type hostError struct {
	kind error
	msg  string
}

func (e *hostError) Error() string { return e.msg }
func (e *hostError) Unwrap() error { return e.kind }

// errStopped traps a plugin whose call's deadline has passed at its next host call.
var errStopped = &hostError{kind: ErrTimeout, msg: "stopped: the call's deadline passed"}

// instanceOf returns the instance a host function's caller belongs to.
func (p *Plugin) instanceOf(mod api.Module) *instance {
	v, ok := p.byModule.Load(mod)
	if !ok {
		panic(fmt.Errorf("extism: host function called from module %q, which is no instance of plugin %s", mod.Name(), p.name))
	}
	return v.(*instance)
}

// instantiateEnv instantiates the "extism:host/env" host module of p's runtime: the host
// functions of the Extism kernel ABI, as go-sdk v1.7.1 (host.go, instantiateEnvModule)
// defines them. Each finds the calling instance by its module and traps once the call's
// deadline has passed.
//
//   - The kernel's block functions (alloc, free, length, length_unsafe, input_set,
//     output_set, output_length, output_offset, reset, error_set, error_get, memory_bytes)
//     are forwarded to the instance's kernel with cached functions.
//   - Its byte and word accessors (load_u8, load_u64, store_u8, store_u64, input_load_u8,
//     input_load_u64) and input_length/input_offset are done here, on the kernel's memory,
//     with the kernel's own bounds (not the SDK's Go versions of the 64-bit ones, which
//     skip the kernel's header check): a host call instead of a host call and a Wasm call.
//   - config_get, var_get, var_set, http_request, http_status_code, http_headers,
//     get_log_level and log_{trace,debug,info,warn,error} are the host's, freeing the
//     blocks the SDK frees (the names of var_get and var_set, the values of var_set, the
//     request and body of http_request, log messages; not config_get's name).
//
// There are no user host functions (no "extism:host/user" module): a plugin importing one
// does not instantiate.
func (p *Plugin) instantiateEnv(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(envModule)
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	fn := func(name string, params, results []api.ValueType, f func(in *instance, stack []uint64)) {
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, mod api.Module, stack []uint64) {
			in := p.instanceOf(mod)
			if in.stopped.Load() {
				panic(errStopped)
			}
			f(in, stack)
		}), params, results).Export(name)
	}
	forward := func(name string, k int, params, results []api.ValueType, after func(in *instance)) {
		fn(name, params, results, func(in *instance, stack []uint64) {
			if err := in.k[k].CallWithStack(context.Background(), stack); err != nil {
				panic(err)
			}
			if after != nil {
				after(in)
			}
		})
	}
	forward("alloc", kAlloc, []api.ValueType{i64}, []api.ValueType{i64}, nil)
	forward("free", kFree, []api.ValueType{i64}, nil, nil)
	forward("length", kLength, []api.ValueType{i64}, []api.ValueType{i64}, nil)
	forward("length_unsafe", kLengthUnsafe, []api.ValueType{i64}, []api.ValueType{i64}, nil)
	forward("input_set", kInputSet, []api.ValueType{i64, i64}, nil, (*instance).refreshInput)
	forward("output_set", kOutputSet, []api.ValueType{i64, i64}, nil, nil)
	forward("output_length", kOutputLength, nil, []api.ValueType{i64}, nil)
	forward("output_offset", kOutputOffset, nil, []api.ValueType{i64}, nil)
	forward("reset", kReset, nil, nil, (*instance).refreshInput)
	forward("error_set", kErrorSet, []api.ValueType{i64}, nil, nil)
	forward("error_get", kErrorGet, nil, []api.ValueType{i64}, nil)
	forward("memory_bytes", kMemoryBytes, nil, []api.ValueType{i64}, nil)

	fn("input_length", nil, []api.ValueType{i64}, func(in *instance, stack []uint64) { stack[0] = in.inLen })
	fn("input_offset", nil, []api.ValueType{i64}, func(in *instance, stack []uint64) { stack[0] = in.inOff })
	fn("load_u8", []api.ValueType{i64}, []api.ValueType{i32}, func(in *instance, stack []uint64) {
		off := stack[0]
		stack[0] = 0
		if in.kernelMemoryCheck(off) {
			stack[0] = uint64(in.readByte(off))
		}
	})
	fn("load_u64", []api.ValueType{i64}, []api.ValueType{i64}, func(in *instance, stack []uint64) {
		off := stack[0]
		stack[0] = 0
		if in.kernelMemoryCheck(off + 7) {
			stack[0] = in.readU64(off)
		}
	})
	fn("store_u8", []api.ValueType{i64, i32}, nil, func(in *instance, stack []uint64) {
		if off := stack[0]; in.kernelMemoryCheck(off) {
			if !in.mem.WriteByte(uint32(off), byte(stack[1])) {
				panic(outOfBounds(off))
			}
		}
	})
	fn("store_u64", []api.ValueType{i64, i64}, nil, func(in *instance, stack []uint64) {
		if off := stack[0]; in.kernelMemoryCheck(off + 7) {
			if !in.mem.WriteUint64Le(uint32(off), stack[1]) {
				panic(outOfBounds(off))
			}
		}
	})
	fn("input_load_u8", []api.ValueType{i64}, []api.ValueType{i32}, func(in *instance, stack []uint64) {
		off := stack[0]
		stack[0] = 0
		if off < in.inLen {
			stack[0] = uint64(in.readByte(in.inOff + off))
		}
	})
	fn("input_load_u64", []api.ValueType{i64}, []api.ValueType{i64}, func(in *instance, stack []uint64) {
		off := stack[0]
		stack[0] = 0
		if off+8 <= in.inLen { // wrapping, as the kernel's i64.add
			stack[0] = in.readU64(in.inOff + off)
		}
	})

	fn("config_get", []api.ValueType{i64}, []api.ValueType{i64}, func(in *instance, stack []uint64) {
		v, ok := p.config[string(in.block(stack[0]))]
		stack[0] = 0
		if ok {
			stack[0] = in.write([]byte(v))
		}
	})
	fn("var_get", []api.ValueType{i64}, []api.ValueType{i64}, func(in *instance, stack []uint64) {
		v, ok := in.vars[string(in.block(stack[0]))]
		in.kmust(kFree, stack[0], 0)
		stack[0] = 0
		if ok {
			stack[0] = in.write(v)
		}
	})
	fn("var_set", []api.ValueType{i64, i64}, nil, func(in *instance, stack []uint64) { in.varSet(stack[0], stack[1]) })
	fn("http_request", []api.ValueType{i64, i64}, []api.ValueType{i64}, func(in *instance, stack []uint64) {
		stack[0] = in.httpRequest(stack[0], stack[1])
	})
	fn("http_status_code", nil, []api.ValueType{i32}, func(in *instance, stack []uint64) { stack[0] = uint64(uint32(in.status)) })
	fn("http_headers", nil, []api.ValueType{i64}, func(in *instance, stack []uint64) { stack[0] = in.httpHeaders() })
	fn("get_log_level", nil, []api.ValueType{i32}, func(in *instance, stack []uint64) { stack[0] = uint64(uint32(p.logLevel())) })
	for name, level := range map[string]int32{"log_trace": logTrace, "log_debug": logDebug, "log_info": logInfo, "log_warn": logWarn, "log_error": logError} {
		fn(name, []api.ValueType{i64}, nil, func(in *instance, stack []uint64) { in.logLine(level, stack[0]) })
	}
	_, err := b.Instantiate(ctx)
	return err
}

func outOfBounds(off uint64) error {
	return fmt.Errorf("address %d is outside the Extism kernel's memory", off)
}

// readByte and readU64 read the kernel's memory at off (below 4 GiB, as the kernel's
// i32.wrap_i64 makes it), trapping outside it.
func (in *instance) readByte(off uint64) byte {
	v, ok := in.mem.ReadByte(uint32(off))
	if !ok {
		panic(outOfBounds(off))
	}
	return v
}

func (in *instance) readU64(off uint64) uint64 {
	v, ok := in.mem.ReadUint64Le(uint32(off))
	if !ok {
		panic(outOfBounds(off))
	}
	return v
}

// varSet is var_set: the variable named by the block at nameOff gets the block at
// valueOff's bytes (valueOff 0 deletes it); both blocks are freed. Variables beyond
// maxVarBytes trap the call with ErrLimit.
func (in *instance) varSet(nameOff, valueOff uint64) {
	name := string(in.block(nameOff))
	in.kmust(kFree, nameOff, 0)
	if valueOff == 0 {
		if v, ok := in.vars[name]; ok {
			in.varBytes -= varEntryOverhead + len(name) + len(v)
			delete(in.vars, name)
		}
		return
	}
	value := in.block(valueOff)
	size := in.varBytes + varEntryOverhead + len(name) + len(value)
	if old, ok := in.vars[name]; ok {
		size -= varEntryOverhead + len(name) + len(old)
	}
	if size > maxVarBytes {
		in.kmust(kFree, valueOff, 0)
		panic(&hostError{kind: ErrLimit, msg: fmt.Sprintf("var_set %q: the plugin's variables would take %d bytes, more than the %d allowed", clip(name), size, maxVarBytes)})
	}
	if in.vars == nil {
		in.vars = map[string][]byte{}
	}
	in.vars[name] = append([]byte(nil), value...)
	in.varBytes = size
	in.kmust(kFree, valueOff, 0)
}

// logLevel is the level get_log_level reports: the lowest the host's logger takes (the
// plugin's trace and debug lines are logged at slog's debug level).
func (p *Plugin) logLevel() int32 {
	ctx := context.Background()
	switch {
	case p.log.Enabled(ctx, slog.LevelDebug):
		return logTrace
	case p.log.Enabled(ctx, slog.LevelInfo):
		return logInfo
	case p.log.Enabled(ctx, slog.LevelWarn):
		return logWarn
	case p.log.Enabled(ctx, slog.LevelError):
		return logError
	}
	return logOff
}

// logLine is log_<level>: the message in the block at off is logged as the plugin's
// (guestLog: rate-limited, clipped, escaped) unless the level is below what the host logs;
// the block is freed.
func (in *instance) logLine(level int32, off uint64) {
	if level >= in.p.logLevel() {
		msg := in.block(off)
		if len(msg) > maxLogLine+1 {
			msg = msg[:maxLogLine+1] // guestLog clips at maxLogLine
		}
		in.p.guestLog(level, string(msg))
	}
	in.kmust(kFree, off, 0)
}
