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
// A feature that receives messages from other programs (ABI 1.2: spec.builder.messages in
// its manifest, sent with osprey.Context.Send or SendAfter) registers a second handler, for
// them, with HandleMessage. Each message is a call of its own, for the address it was sent
// to: the Context's Keys are the receiving entity's and its Timestamp the message's event
// time, and the Result is the feature's value for that entity (Null writes nothing):
//
//	func init() {
//		program.Handle(onRow)
//		program.HandleMessage(func(ctx *osprey.Context, msg osprey.Message) (program.Result, error) {
//			total := ctx.Storage("total")
//			sum, _, err := total.Float()
//			if err != nil {
//				return program.Result{}, err
//			}
//			sum += msg.Value.F
//			if err := total.Set(osprey.Float(sum)); err != nil {
//				return program.Result{}, err
//			}
//			return program.Result{Value: osprey.Float(sum)}, nil
//		})
//	}
//
// The handler for rows and requests (Handle) serves every other call: a feature whose value
// is only ever written by messages still gets a call on request when it has no data
// source, and should answer it (a Null Result writes nothing).
//
// Built for GOOS=wasip1 with -buildmode=c-shared, the package exports osprey_program
// (ABI §4.1, §4.6). The module's _initialize runs the init functions (but not main), so the
// handlers are registered before the first call.
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

// MessageHandler computes a feature value from a message another program sent to the
// call's address (ABI 1.2).
type MessageHandler func(ctx *osprey.Context, msg osprey.Message) (Result, error)

var (
	handler        Handler
	messageHandler MessageHandler
	call           core.Call
	out            []byte
)

// NoHandler is the error message of a call made with no program registered.
const NoHandler = "no program registered (call program.Handle in init)"

// NoMessageHandler is the error message of a message call made with no message handler
// registered.
const NoMessageHandler = "a message arrived but no message handler is registered (call program.HandleMessage in init)"

// Handle registers the program. Call it from an init function; a later call replaces the
// handler.
func Handle(fn func(ctx *osprey.Context, row osprey.Row) (Result, error)) {
	handler = fn
}

// HandleMessage registers the program's handler for messages (ABI 1.2): the host calls it
// for each message sent to one of the feature's addresses, which its manifest allows with
// spec.builder.messages. Call it from an init function; a later call replaces the handler.
// A module that registers none fails every message call with NoMessageHandler.
func HandleMessage(fn func(ctx *osprey.Context, msg osprey.Message) (Result, error)) {
	messageHandler = fn
}

// Run serves one call of osprey_program: it decodes input — a program call (ABI §4.1) or a
// message call (§4.6) —, runs the handler registered for it (recovering a panic into an
// error response that quotes the panic and the first frames of its stack), and returns the
// encoded response (ABI §4.3). The response is valid until the next call of Run, which
// reuses its memory. The osprey_program export calls Run; tests can call it directly.
func Run(input []byte) []byte {
	out = serve(out[:0], input)
	return out
}

func serve(b, input []byte) []byte {
	if len(input) > 0 && input[0] == abi.CallMessage {
		return serveMessage(b, input)
	}
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
	return respond(b, &res, panicked, err)
}

// serveMessage serves a message call.
func serveMessage(b, input []byte) []byte {
	if messageHandler == nil {
		return abi.AppendErrorResponse(b, abi.StatusError, NoMessageHandler)
	}
	var m abi.MessageCall
	if err := call.DecodeMessage(input, &m); err != nil {
		call.End()
		return abi.AppendErrorResponse(b, abi.StatusError, "malformed message call: "+err.Error())
	}
	msg := osprey.Message{From: osprey.Address{FQN: m.FromFQN, Keys: osprey.Keys(m.FromKeys)}, Value: m.Message,
		Hops: int(m.Hops), Attempt: int(m.Attempt)}
	var res Result
	panicked, err := invokeMessage(messageHandler, (*osprey.Context)(&call), &msg, &res)
	call.End()
	return respond(b, &res, panicked, err)
}

// respond appends the response to a call whose handler returned *res and err, or panicked.
func respond(b []byte, res *Result, panicked string, err error) []byte {
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

// invokeMessage is invoke for a message handler.
func invokeMessage(h MessageHandler, ctx *osprey.Context, msg *osprey.Message, res *Result) (panicked string, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicked = "panic: " + core.FormatAny(r) + core.Frames(5)
		}
	}()
	*res, err = h(ctx, *msg)
	return "", err
}
