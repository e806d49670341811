// Package host runs feature programs and middlewares compiled to WebAssembly, for the
// engine, under wazero.
//
// A Host compiles each module once per content digest (with an optional on-disk
// compilation cache), checks it against the ABI (abi/ABI.md) when a feature is applied —
// exports and their signatures, the ABI version, imports, size and memory — and keeps a pool
// of instances per module: an instance serves one call at a time, is initialised once, and
// is discarded after a trap, a timeout or an exit. Calls honour the caller's deadline: a
// runaway guest is stopped and its instance replaced, while other features keep serving.
//
// Guests get the host functions of ABI §3 (get_feature, result, log, now; for programs,
// ABI 1.2's storage_get, storage_set and storage_clear, and send, send_after, cancel and
// egress, over the engine's Invocation) and WASI with clocks and randomness only: no
// filesystem, environment, arguments, network or real sleep. A program whose feature
// receives messages (spec.builder.messages) gets each as a message call (ABI §4.6).
//
// A Host implements engine.ProgramLoader (the "wasm" builder) and resolves Wasm middlewares
// (engine.MiddlewareRef with Module set). All its methods are safe for concurrent use.
package host
