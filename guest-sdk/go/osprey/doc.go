// Package osprey is the core of the Go guest SDK for Osprey feature programs and middlewares
// compiled to WebAssembly: values, keys, the lazy input Row, and the call Context through
// which a guest reads other features, uses its program's storage (Context.Storage, ABI 1.2),
// sends messages to other programs and rows to egresses (Context.Send, SendAfter, Cancel and
// Egress, ABI 1.2), logs and reads the clock. A program receives messages, as a Message from
// an Address, through a handler registered with program.HandleMessage.
//
// Programs register with package program and middlewares with package middleware, in an
// init function (see the module's README for complete examples and the build command).
// Built for GOOS=wasip1, this package also provides the osprey_abi_version and osprey_alloc
// exports the ABI requires (abi/ABI.md).
//
// The SDK does not link fmt or log/slog unless the guest does (Reject with arguments uses
// fmt.Sprintf), keeping modules near the Go runtime's own size.
//
// # Performance
//
// A call's path — decoding the call, indexing its row, running the handler, encoding the
// response — allocates nothing in steady state when the handler reads numbers and returns
// a number: buffers and indexes are reused from call to call. Strings and lists read from a
// Row, and Context.Keys, allocate.
package osprey
