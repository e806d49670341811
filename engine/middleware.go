package engine

import (
	"context"
	"time"
)

// Op is an engine operation.
type Op uint8

// Engine operations.
const (
	OpGet Op = iota + 1
	OpSet
	OpAppend
	OpIncr
	OpUpdate
)

var opNames = [...]string{OpGet: "get", OpSet: "set", OpAppend: "append", OpIncr: "incr", OpUpdate: "update"}

// String returns the operation's name in lower case.
func (o Op) String() string {
	if o >= OpGet && o <= OpUpdate {
		return opNames[o]
	}
	return "op(?)"
}

// Call describes the operation a middleware runs in. Middlewares must not modify it.
type Call struct {
	Op       Op
	Stage    Stage
	Feature  *Feature
	Selector Selector
	Keys     Keys
	// EncodedKeys is EncodeKeys(Feature.Keys, Keys).
	EncodedKeys string
	// Timestamp is the write's timestamp, or the read's time.
	Timestamp time.Time
	// Fresh reports, at postGet, whether the value read was fresh.
	Fresh bool
}

// Middleware is one step of a feature's pipeline. It receives the value flowing through the
// stage and returns the value to carry on with, or an error that stops the operation.
//
// What flows through each stage:
//   - preSet: the value about to be written (for Incr, the increment); the result is written.
//   - postSet: the value after the write; the result is what notifications carry.
//   - preGet: Null; returning a non-null value serves it without reading the state.
//   - postGet: the value read (Null when absent); the result is served.
//
// A middleware must honour ctx: the engine runs the whole pipeline under the feature's
// timeout. It must be safe for concurrent use.
type Middleware func(ctx context.Context, call *Call, v Value) (Value, error)

// MiddlewareResolver turns a feature's MiddlewareRef into a Middleware when the feature is
// applied: the plugins registry resolves native middlewares by name, the host Wasm ones.
type MiddlewareResolver interface {
	ResolveMiddleware(ctx context.Context, f *Feature, ref MiddlewareRef) (Middleware, error)
}

// MiddlewareResolverFunc adapts a function to MiddlewareResolver.
type MiddlewareResolverFunc func(ctx context.Context, f *Feature, ref MiddlewareRef) (Middleware, error)

// ResolveMiddleware calls fn.
func (fn MiddlewareResolverFunc) ResolveMiddleware(ctx context.Context, f *Feature, ref MiddlewareRef) (Middleware, error) {
	return fn(ctx, f, ref)
}
