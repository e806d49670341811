// Package sdk is the Go guest SDK for Osprey: write feature programs and middlewares in Go,
// compile them to WebAssembly with the standard toolchain, and let the Osprey host run them.
// This package holds no code; the SDK is three packages:
//
//   - osprey: values, keys, the lazy input Row, and the call Context (reading other
//     features, a program's address-scoped storage and messages, logging, the host clock).
//     It also provides the exports every module needs.
//   - program: registers a feature program and its handler for messages (the
//     osprey_program export).
//   - middleware: registers a middleware (the osprey_middleware export).
//
// The contract between host and guest is abi/ABI.md in the Osprey repository.
//
// # A program
//
// A feature program turns a call — a row from a data source, or a request — into the
// feature's value. This one computes a transaction's amount in units from its cents:
//
//	//go:build wasip1
//
//	package main
//
//	import (
//		"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
//		"github.com/osprey-ml/osprey/guest-sdk/go/program"
//	)
//
//	func init() {
//		program.Handle(func(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
//			cents, err := row.Int("amount_cents")
//			if err != nil {
//				return program.Result{}, err // field "amount_cents": missing
//			}
//			card, err := row.String("card_id")
//			if err != nil {
//				return program.Result{}, err
//			}
//			return program.Result{
//				Value: osprey.Float(float64(cents) / 100),
//				Keys:  osprey.K("card_id", card),
//			}, nil
//		})
//	}
//
//	func main() {}
//
// # A middleware
//
// A middleware sees the value flowing through a stage of a feature's pipeline and returns
// the value to carry on with; osprey.Reject stops the operation as a rejection:
//
//	//go:build wasip1
//
//	package main
//
//	import (
//		"github.com/osprey-ml/osprey/guest-sdk/go/middleware"
//		"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
//	)
//
//	func init() {
//		middleware.Handle(func(ctx *osprey.Context, call middleware.Call, v osprey.Value) (osprey.Value, error) {
//			if v.Tag == osprey.TagFloat && v.F < 0 {
//				return v, osprey.Reject("negative amount %v", v.F)
//			}
//			return v, nil
//		})
//	}
//
//	func main() {}
//
// # Building
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o amount.wasm ./amount
//
// -buildmode=c-shared makes a WASI reactor: the host calls its _initialize export once per
// instance, which runs the package init functions (registering the handler) but not
// main.main; main must exist and is never called. Handlers registered from main are
// therefore never registered, and every call fails with "no program registered (call
// program.Handle in init)".
//
// # Rules of the road
//
//   - An instance serves one call at a time, and the host keeps a pool of instances, each
//     with its own memory: globals are per instance and may vanish at any time.
//   - Context and Row are valid only during the call; the SDK reuses their memory.
//   - Prefer osprey.Now to time.Now. The host grants no filesystem, network or environment.
//   - A panic fails the call with the panic's message and the first frames of its stack.
//     A fatal error (out of memory, a stack overflow) ends the instance; the host replaces it.
package sdk
