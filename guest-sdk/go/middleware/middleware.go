// Package middleware runs a Wasm middleware: a function that sees, and may replace or
// reject, the value flowing through a stage of a feature's pipeline (before or after a get
// or a write). Register it in an init function:
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
// Built for GOOS=wasip1 with -buildmode=c-shared, the package exports osprey_middleware
// (ABI §4.2).
package middleware

import (
	"errors"
	"strconv"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
)

// Stage is where in a feature's pipeline the middleware runs.
type Stage uint8

// Stages (ABI §4.2).
const (
	PreGet  Stage = Stage(abi.StagePreGet)
	PostGet Stage = Stage(abi.StagePostGet)
	PreSet  Stage = Stage(abi.StagePreSet)
	PostSet Stage = Stage(abi.StagePostSet)
)

// String returns the stage's manifest spelling: preGet, postGet, preSet, postSet.
func (s Stage) String() string {
	switch s {
	case PreGet:
		return "preGet"
	case PostGet:
		return "postGet"
	case PreSet:
		return "preSet"
	case PostSet:
		return "postSet"
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// Op is the operation the pipeline serves.
type Op uint8

// Operations (ABI §4.2).
const (
	Get    Op = Op(abi.OpGet)
	Set    Op = Op(abi.OpSet)
	Append Op = Op(abi.OpAppend)
	Incr   Op = Op(abi.OpIncr)
	Update Op = Op(abi.OpUpdate)
)

// String returns the operation's name: get, set, append, incr, update.
func (o Op) String() string {
	switch o {
	case Get:
		return "get"
	case Set:
		return "set"
	case Append:
		return "append"
	case Incr:
		return "incr"
	case Update:
		return "update"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Call says where the middleware runs.
type Call struct {
	Stage Stage
	Op    Op
}

// Handler is a middleware: it returns the value to carry on with (v itself to pass it
// through), or an error: one from osprey.Reject rejects the operation, any other fails it.
type Handler func(ctx *osprey.Context, call Call, v osprey.Value) (osprey.Value, error)

var (
	handler Handler
	call    core.Call
	out     []byte
)

// NoHandler is the error message of a call made with no middleware registered.
const NoHandler = "no middleware registered (call middleware.Handle in init)"

// Handle registers the middleware. Call it from an init function; a later call replaces
// the handler.
func Handle(fn func(ctx *osprey.Context, call Call, v osprey.Value) (osprey.Value, error)) {
	handler = fn
}

// Run serves one middleware call: it decodes input (ABI §4.2), runs the handler (recovering
// a panic into an error response) and returns the encoded response (ABI §4.3), valid until
// the next call of Run. The osprey_middleware export calls Run; tests can call it directly.
func Run(input []byte) []byte {
	out = serve(out[:0], input)
	return out
}

func serve(b, input []byte) []byte {
	if handler == nil {
		return abi.AppendErrorResponse(b, abi.StatusError, NoHandler)
	}
	in, err := call.DecodeMiddleware(input)
	if err != nil {
		call.End()
		return abi.AppendErrorResponse(b, abi.StatusError, "malformed middleware call: "+err.Error())
	}
	c := Call{Stage: Stage(call.Stage()), Op: Op(call.Op())}
	var v osprey.Value
	panicked, err := invoke(handler, (*osprey.Context)(&call), c, &in, &v)
	call.End()
	switch {
	case panicked != "":
		return abi.AppendErrorResponse(b, abi.StatusError, panicked)
	case err != nil:
		return abi.AppendErrorResponse(b, status(err), err.Error())
	}
	start := len(b)
	b, msg := core.AppendValue(append(b, abi.StatusOK), &v)
	if msg != "" {
		return abi.AppendErrorResponse(b[:start], abi.StatusError, "middleware returned "+msg)
	}
	if n := len(b) - start; n > abi.MaxMessageSize {
		return abi.AppendErrorResponse(b[:start], abi.StatusError, "middleware response of "+strconv.Itoa(n)+
			" bytes exceeds the limit of "+strconv.Itoa(abi.MaxMessageSize))
	}
	return b
}

// status returns StatusRejected for a rejection (osprey.Reject), StatusError otherwise.
func status(err error) uint8 {
	var rej *osprey.RejectedError
	if errors.As(err, &rej) {
		return abi.StatusRejected
	}
	return abi.StatusError
}

// invoke runs h on *in, storing its result in *out and turning a panic into a message.
// (Values go through pointers: each copy of one costs tens of nanoseconds in a guest.)
func invoke(h Handler, ctx *osprey.Context, c Call, in, out *osprey.Value) (panicked string, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicked = "panic: " + core.FormatAny(r) + core.Frames(5)
		}
	}()
	*out, err = h(ctx, c, *in)
	return "", err
}
