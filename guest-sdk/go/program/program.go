// Package program runs a feature program: a function from a call (its Context and input
// Row) to the feature's value. Register it in an init function:
//
//	func init() {
//		program.Handle(func(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
//			amount, err := row.Float("amount")
//			if err != nil {
//				return program.Result{}, err
//			}
//			return program.Result{Value: osprey.Float(amount)}, nil
//		})
//	}
//
//	func main() {}
//
// Built for GOOS=wasip1 with -buildmode=c-shared, the package exports osprey_program
// (ABI §4.1). The module's _initialize runs the init functions (but not main), so the
// handler is registered before the first call.
package program

import (
	"math"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
)

// Result is what a program returns.
type Result struct {
	// Value is the feature's value. Null (the zero Value) writes nothing.
	Value osprey.Value
	// Keys is the entity the value belongs to, e.g. taken from the row. Nil means "not
	// given": the engine uses the call's keys or, for a row, the row's fields named like the
	// feature's keys. A non-nil empty Keys is sent as given.
	Keys osprey.Keys
	// Timestamp is the value's time. The zero time means "not given": the engine uses the
	// call's timestamp (the row's time, or the request's).
	Timestamp time.Time
}

// Handler computes a feature value from a call.
type Handler func(ctx *osprey.Context, row osprey.Row) (Result, error)

var (
	handler Handler
	call    core.Call
	out     []byte
)

// NoHandler is the error message of a call made with no program registered.
const NoHandler = "no program registered (call program.Handle in init)"

// Handle registers the program. Call it from an init function; a later call replaces the
// handler.
func Handle(fn func(ctx *osprey.Context, row osprey.Row) (Result, error)) {
	handler = fn
}

// Run serves one program call: it decodes input (ABI §4.1), runs the handler (recovering a
// panic into an error response that quotes the panic and the first frames of its stack),
// and returns the encoded response (ABI §4.3). The response is valid until the next call of
// Run, which reuses its memory. The osprey_program export calls Run; tests can call it
// directly.
func Run(input []byte) []byte {
	out = serve(out[:0], input)
	return out
}

func serve(b, input []byte) []byte {
	if handler == nil {
		return abi.AppendErrorResponse(b, abi.StatusError, NoHandler)
	}
	if err := call.DecodeProgram(input); err != nil {
		call.End()
		return abi.AppendErrorResponse(b, abi.StatusError, "malformed program call: "+err.Error())
	}
	var res Result
	panicked, err := invoke(handler, (*osprey.Context)(&call), osprey.Row(call.Row()), &res)
	call.End()
	switch {
	case panicked != "":
		return abi.AppendErrorResponse(b, abi.StatusError, panicked)
	case err != nil:
		return abi.AppendErrorResponse(b, abi.StatusError, err.Error())
	}
	// The response is encoded field by field rather than through an abi.ProgramResult, and
	// res is never copied: inside a Go guest, copying a Result (an abi.Value of some 200
	// bytes and more) costs tens of nanoseconds each time (RATIONALE.md, "Go guests").
	var flags uint8
	if res.Keys != nil {
		if msg := core.CheckKeys(res.Keys); msg != "" {
			return abi.AppendErrorResponse(b, abi.StatusError, "program returned keys with a "+msg)
		}
		flags |= abi.FlagKeys
	}
	var ts int64
	if !res.Timestamp.IsZero() {
		if sec := res.Timestamp.Unix(); (sec <= minSec || sec >= maxSec) &&
			(res.Timestamp.Before(minTime) || res.Timestamp.After(maxTime)) {
			return abi.AppendErrorResponse(b, abi.StatusError, "program returned timestamp "+
				res.Timestamp.Format(time.RFC3339)+", outside the years 1678 to 2262")
		}
		flags |= abi.FlagTimestamp
		ts = res.Timestamp.UnixNano()
	}
	start := len(b)
	b, msg := core.AppendValue(append(b, abi.StatusOK), &res.Value)
	if msg != "" {
		return abi.AppendErrorResponse(b[:start], abi.StatusError, "program returned "+msg)
	}
	b = append(b, flags)
	if flags&abi.FlagKeys != 0 {
		b = abi.AppendKeys(b, res.Keys)
	}
	if flags&abi.FlagTimestamp != 0 {
		b = abi.AppendI64(b, ts)
	}
	if n := len(b) - start; n > abi.MaxMessageSize {
		return abi.AppendErrorResponse(b[:start], abi.StatusError, "program response of "+strconv.Itoa(n)+
			" bytes exceeds the limit of "+strconv.Itoa(abi.MaxMessageSize))
	}
	return b
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

const (
	minSec = math.MinInt64/int64(time.Second) - 1 // -9223372037
	maxSec = math.MaxInt64 / int64(time.Second)   // 9223372036
)

// invoke runs h, storing its result in *res and turning a panic into a message. (The
// result goes through a pointer: returned, it would be copied once more.)
func invoke(h Handler, ctx *osprey.Context, row osprey.Row, res *Result) (panicked string, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicked = "panic: " + core.FormatAny(r) + core.Frames(5)
		}
	}()
	*res, err = h(ctx, row)
	return "", err
}
