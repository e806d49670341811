package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/host/extism"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/registry"
)

// Error codes. Every error a handler returns is a *connect.Error whose code follows this
// table (first match wins), whose message names the offending request field where there is
// one ("selector: invalid selector \"x+\": aggregation: empty after '+'"), and which then
// also carries a google.rpc.BadRequest detail naming that field. Messages never carry stack
// traces; a panic is answered with a bare "internal error" and logged with its stack.
//
//	cause                                                 code
//	----------------------------------------------------  ------------------
//	context.DeadlineExceeded: the feature's timeout (a     DeadlineExceeded
//	  slow middleware, program or state) or the client's;
//	  extism.ErrTimeout (a plugin's call past its timeout)
//	context.Canceled: the client went away                 Canceled
//	engine.ErrInvalidSelector, ErrInvalidKeys,             InvalidArgument
//	  ErrInvalidFeature, ErrInvalidDataSource;
//	  manifest.ErrInvalid; host.ErrModule,
//	  host.ErrInputTooLarge; a malformed
//	  value, row, timestamp or modules entry; an empty
//	  GetMany; a module the manifest names but the
//	  request lacks; a manifest naming an unknown
//	  middleware
//	engine.ErrFeatureNotFound: feature or data source;     NotFound
//	  extism.ErrNotApplied (a plugin, or a function of
//	  one, that is not applied)
//	engine.ErrTypeMismatch, ErrUnsupported,                FailedPrecondition
//	  ErrIncompatibleChange, ErrRejected;
//	  host.ErrModuleNotFound, host.ErrGuestFailed (a
//	  guest's own error status); a manifest naming a data
//	  source not applied; Wasm modules sent to a server
//	  without a Host; extism.ErrFailed (a plugin's own
//	  error), ErrDenied (the plugin policy refuses what
//	  a plugin asks for), ErrNoFunction
//	engine.ErrVersionOutOfRange, ErrOutOfWindow            OutOfRange
//	a message over MaxMessageBytes, a GetMany over its     ResourceExhausted
//	  limits, a Watch client that reads too slowly,
//	  host.ErrExhausted (the guest memory budget);
//	  extism.ErrLimit (a plugin's memory, output or HTTP
//	  response cap); engine.ErrMailboxFull (a
//	  sender's undelivered messages at their most)
//	no bearer token, or an unknown one                     Unauthenticated
//	a token without the scope the call needs               PermissionDenied
//	a network error (the state or registry store out of    Unavailable
//	  reach, or its connection closed: io.EOF); a server
//	  shutting down (Watch); extism.ErrClosed
//	Watch on a server without a Notifier                   Unimplemented
//	anything else: host.ErrTrap, extism.ErrTrap (a guest   Internal
//	  or plugin failed), a
//	  panic, a registry store failing, a bug
//
// Where InvalidArgument ends and FailedPrecondition begins: InvalidArgument means the
// request is wrong whatever the server holds (a malformed selector, keys that do not match
// the feature's, a manifest that does not validate); FailedPrecondition means the request
// is well formed but does not fit the feature as applied (a value of the wrong type, Append
// to a scalar, +max on a feature that does not aggregate max, a change that would misread
// stored values). A middleware's rejection (engine.ErrRejected) is therefore
// FailedPrecondition: the value is well formed and the feature's rules refuse it.
// ErrUnsupported is never Unimplemented, which is kept for a capability the server lacks.
// ErrVersionOutOfRange and ErrOutOfWindow are both OutOfRange: the request asks beyond a
// range the feature keeps (@-N past keepPrevious, a timestamp older than the window plus
// its grace period), and is fixed by asking within it. Ingest is the exception to the
// type rule: a row that fails (its program, its types, its keys) makes the call
// InvalidArgument, with a rows[i] field violation per failure, since the rows are the
// request; so is DryRun: a row its program fails on (an error it returns, a trap, a value
// of the wrong type) is InvalidArgument on the field row, and not logged at ERROR.

// fieldNames names the request fields that an RPC's errors are attributed to; "" leaves
// errors of that kind unattributed.
type fieldNames struct {
	selector  string // engine.ErrInvalidSelector: the selector or FQN
	keys      string // engine.ErrInvalidKeys
	value     string // engine.ErrTypeMismatch, engine.ErrRejected
	timestamp string // engine.ErrOutOfWindow
}

// codeOf returns the code of an error per the table above.
func codeOf(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	var fe *fieldError
	if errors.As(err, &fe) { // a malformed request field, whatever the cause
		return connect.CodeInvalidArgument
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, extism.ErrTimeout):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, engine.ErrInvalidSelector), errors.Is(err, engine.ErrInvalidKeys),
		errors.Is(err, manifest.ErrInvalid), errors.Is(err, engine.ErrInvalidFeature),
		errors.Is(err, engine.ErrInvalidDataSource), errors.Is(err, host.ErrModule),
		errors.Is(err, host.ErrInputTooLarge):
		return connect.CodeInvalidArgument
	case errors.Is(err, host.ErrExhausted), errors.Is(err, extism.ErrLimit), errors.Is(err, engine.ErrMailboxFull):
		return connect.CodeResourceExhausted
	case errors.Is(err, engine.ErrFeatureNotFound), errors.Is(err, extism.ErrNotApplied):
		return connect.CodeNotFound
	case errors.Is(err, engine.ErrTypeMismatch), errors.Is(err, engine.ErrUnsupported),
		errors.Is(err, engine.ErrIncompatibleChange), errors.Is(err, engine.ErrRejected),
		errors.Is(err, host.ErrModuleNotFound), errors.Is(err, host.ErrGuestFailed),
		errors.Is(err, extism.ErrFailed), errors.Is(err, extism.ErrDenied), errors.Is(err, extism.ErrNoFunction):
		return connect.CodeFailedPrecondition
	case errors.Is(err, engine.ErrVersionOutOfRange), errors.Is(err, engine.ErrOutOfWindow):
		return connect.CodeOutOfRange
	case isUnavailable(err), errors.Is(err, extism.ErrClosed):
		return connect.CodeUnavailable
	}
	return connect.CodeInternal
}

// isUnavailable reports network failures: a state store or registry store out of reach,
// or one whose connection closed under a command (go-redis then returns io.EOF, as when
// Redis crashes or a Sentinel master is killed mid-call).
func isUnavailable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// fieldOf returns the request field an error is about, or "".
func fieldOf(err error, names fieldNames) string {
	var fe *fieldError
	if errors.As(err, &fe) {
		return fe.field
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ""
	case errors.Is(err, engine.ErrInvalidSelector):
		return names.selector
	case errors.Is(err, engine.ErrInvalidKeys):
		return names.keys
	case errors.Is(err, engine.ErrTypeMismatch), errors.Is(err, engine.ErrRejected):
		return names.value
	case errors.Is(err, engine.ErrOutOfWindow):
		return names.timestamp
	}
	return ""
}

// rpcError turns any error into a *connect.Error per the table above: the code, a message
// prefixed with the request field it names (a *fieldError already is), and a
// google.rpc.BadRequest detail with that field.
func rpcError(err error, names fieldNames) *connect.Error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	code := codeOf(err)
	field := fieldOf(err, names)
	msg := err.Error()
	if field != "" && !strings.HasPrefix(msg, field+":") {
		msg = field + ": " + msg
	}
	return withField(connect.NewError(code, errors.New(msg)), field, msg)
}

// invalid returns an InvalidArgument error about one request field.
func invalid(field string, format string, args ...any) *connect.Error {
	msg := field + ": " + fmt.Sprintf(format, args...)
	return withField(connect.NewError(connect.CodeInvalidArgument, errors.New(msg)), field, msg)
}

// withField attaches a google.rpc.BadRequest detail naming field, when there is one.
func withField(ce *connect.Error, field, msg string) *connect.Error {
	if field == "" {
		return ce
	}
	detail, err := connect.NewErrorDetail(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}},
	})
	if err == nil {
		ce.AddDetail(detail)
	}
	return ce
}

// registryError turns an error of the registry (package registry) into a *connect.Error:
//
//	registry.ErrNotFound                                 NotFound
//	registry.ErrPending (an abandoned restore has not    Unavailable
//	  returned)
//	registry.ErrConflict (another replica changed the    Aborted
//	  object in the shared store meanwhile)
//	registry.ErrInUse, ErrNoModules, ErrModuleUnknown    FailedPrecondition
//	registry.ErrUnsupportedKind (a Plugin or Egress      Unimplemented
//	  manifest the server has no host for)
//	*registry.FieldError (module bytes wrong or          the cause's code, InvalidArgument
//	  missing)                                             when it has none; on its field
//	*registry.ObjectError (an object the engine or host  the cause's code, except NotFound
//	  refused)                                             (a data source not applied):
//	                                                       FailedPrecondition, and one the
//	                                                       table does not classify (an unknown
//	                                                       middleware, a module that fails to
//	                                                       start): InvalidArgument on manifest
//	anything else (the engine's, the store's errors)     rpcError
func registryError(err error, names fieldNames) *connect.Error {
	var oe *registry.ObjectError
	var fe *registry.FieldError
	switch {
	case errors.As(err, &oe):
		code := codeOf(oe.Err)
		if errors.Is(oe.Err, registry.ErrInUse) { // a plugin that features still name
			code = connect.CodeFailedPrecondition
		}
		switch code {
		case connect.CodeNotFound:
			code = connect.CodeFailedPrecondition
		case connect.CodeInternal, connect.CodeUnknown:
			code = connect.CodeInvalidArgument
		}
		ce := connect.NewError(code, err)
		if code == connect.CodeInvalidArgument {
			return withField(ce, "manifest", err.Error())
		}
		return ce
	case errors.As(err, &fe):
		code := codeOf(fe.Err)
		if code == connect.CodeInternal || code == connect.CodeUnknown {
			code = connect.CodeInvalidArgument
		}
		return withField(connect.NewError(code, errors.New(fe.Error())), fe.Field, fe.Error())
	case errors.Is(err, registry.ErrPending):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, registry.ErrConflict):
		return connect.NewError(connect.CodeAborted, err)
	case errors.Is(err, registry.ErrUnsupportedKind):
		return connect.NewError(connect.CodeUnimplemented, err)
	case errors.Is(err, registry.ErrInUse), errors.Is(err, registry.ErrNoModules), errors.Is(err, registry.ErrModuleUnknown):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, registry.ErrNotFound):
		return rpcError(err, names) // NotFound: it wraps engine.ErrFeatureNotFound's message
	}
	return rpcError(err, names)
}
