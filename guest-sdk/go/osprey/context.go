package osprey

import (
	"errors"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
)

// Context is what a program or middleware knows about its call, and its way to the host:
// reading other features (Get), a program's storage (Storage), logging, the clock. It is
// valid only during the call: the SDK reuses it for the next one.
type Context core.Call

// GetResult is the result of Context.Get.
type GetResult struct {
	// Value is the feature's value; Null when not found.
	Value Value
	// Found reports whether the feature has a value for the keys.
	Found bool
	// Fresh reports whether the value is younger than the feature's freshness.
	Fresh bool
	// Timestamp is when the value was written (for a window, its last update); the zero
	// time when not found.
	Timestamp time.Time
}

// ErrCallEnded is returned by Context.Get when called after the call returned.
var ErrCallEnded = errors.New("osprey: Context used after its call returned")

func (c *Context) call() *core.Call { return (*core.Call)(c) }

// FQN returns the fully qualified name of the feature being computed (or, for a middleware,
// the feature whose pipeline it runs in).
func (c *Context) FQN() string { return c.call().FQN() }

// Keys returns the call's keys (nil when the caller gave none, e.g. for a program fed a row).
// Each call returns a new slice.
func (c *Context) Keys() Keys { return Keys(c.call().Keys()) }

// Timestamp returns the call's time: the row's time, or the request's.
func (c *Context) Timestamp() time.Time { return unixTime(c.call().Timestamp()) }

// Get reads a feature through the engine: selector names it (e.g. "fraud.amount+sum",
// "geo.city@-1"), keys the entity. Nil keys mean the call's own keys (passed to the host as
// received, without decoding them). A program may only read the features its manifest
// lists in spec.dependencies.
//
// A value that is absent, expired or stale is not an error: it is a GetResult with Found
// false. The error reports a failure to read, naming the selector.
func (c *Context) Get(selector string, keys Keys) (GetResult, error) {
	cc := c.call()
	if !cc.Active() {
		return GetResult{}, ErrCallEnded
	}
	enc := cc.KeysRaw()
	if keys != nil {
		if msg := core.CheckKeys(keys); msg != "" {
			return GetResult{}, errors.New("get " + selector + ": " + msg)
		}
		cc.Scratch().Keys = abi.AppendKeys(cc.Scratch().Keys[:0], keys)
		enc = cc.Scratch().Keys
	} else if len(enc) == 0 {
		enc = []byte{0} // no keys: an empty Keys encoding
	}
	out := resultSlot(cc)
	b, failed, problem := fetch(cc, core.GetFeature(selector, enc, out), out)
	if problem != "" {
		return GetResult{}, errors.New("get " + selector + ": " + problem)
	}
	if failed {
		return GetResult{}, errors.New("get " + selector + ": " + string(b))
	}
	var d abi.Decoder
	d.Reset(b)
	r := d.GetResult()
	if err := d.Done(); err != nil {
		return GetResult{}, errors.New("get " + selector + ": " + err.Error())
	}
	res := GetResult{Value: r.Value, Found: r.Found, Fresh: r.Fresh}
	if r.Found || r.Timestamp != 0 {
		res.Timestamp = unixTime(r.Timestamp)
	}
	return res, nil
}

// resultSlot returns the buffer offered to the host for a result (ABI §3), at least 256
// bytes, reused from call to call.
func resultSlot(cc *core.Call) []byte {
	if cap(cc.Scratch().Out) < 256 {
		cc.Scratch().Out = make([]byte, 256)
	}
	return cc.Scratch().Out[:cap(cc.Scratch().Out)]
}

// fetch completes a host call by the result-slot convention (ABI §3): the call returned n
// with out offered. It returns the result's bytes (fetched with result when they did not
// fit) or, when failed, the host's error message; problem says how the host broke the
// convention, if it did.
func fetch(cc *core.Call, n int32, out []byte) (b []byte, failed bool, problem string) {
	failed = n < 0
	size := int(n)
	if failed {
		size = -size
	}
	if size > abi.MaxMessageSize {
		return nil, false, "the host returned a result of " + strconv.Itoa(size) + " bytes"
	}
	if failed || size > len(out) {
		if size > len(out) {
			cc.Scratch().Out = make([]byte, size)
			out = cc.Scratch().Out
		}
		if m := core.Result(out[:size]); int(m) != size {
			return nil, false, "result returned " + strconv.Itoa(int(m)) + ", want " + strconv.Itoa(size)
		}
	}
	return out[:size], failed, ""
}

// Level is a log level. Its values are log/slog's: osprey.Level(slog.LevelWarn) is
// LevelWarn. (The SDK does not import log/slog, which would add 0.2 MB to every module.)
type Level int32

// Log levels.
const (
	LevelDebug Level = -4
	LevelInfo  Level = 0
	LevelWarn  Level = 4
	LevelError Level = 8
)

// Log logs msg at level through the host, which adds the feature's FQN. attrs are
// log/slog-style alternating keys and values: "card", id, "amount", 12.5. Values may be
// strings, bools, integers, floats, time.Time, time.Duration, errors, fmt.Stringers, lists
// of those and Values; other types are logged as "!UNSUPPORTED …". A value without a string
// key is logged under "!BADKEY", and a repeated key gets a suffix (#2, …).
func (c *Context) Log(level Level, msg string, attrs ...any) {
	cc := c.call()
	var enc []byte
	if len(attrs) > 0 {
		cc.Scratch().Log = core.AppendAttrs(cc.Scratch().Log[:0], attrs)
		enc = cc.Scratch().Log
	}
	core.Log(int32(level), msg, enc)
}

// Debug logs at LevelDebug.
func (c *Context) Debug(msg string, attrs ...any) { c.Log(LevelDebug, msg, attrs...) }

// Info logs at LevelInfo.
func (c *Context) Info(msg string, attrs ...any) { c.Log(LevelInfo, msg, attrs...) }

// Warn logs at LevelWarn.
func (c *Context) Warn(msg string, attrs ...any) { c.Log(LevelWarn, msg, attrs...) }

// Error logs at LevelError, which the host records as warn: error is the host's own level
// (ABI.md §3 "Logging").
func (c *Context) Error(msg string, attrs ...any) { c.Log(LevelError, msg, attrs...) }

// Now returns the host's current time (in UTC). Prefer it to time.Now, whose clock the host
// may not grant.
func Now() time.Time { return unixTime(core.Now()) }

// RejectedError is the error Reject returns. A middleware returning it (or an error wrapping
// it) stops the operation as a rejection (ABI status 2) rather than a failure.
type RejectedError struct {
	// Msg says why the value was rejected.
	Msg string
}

// Error returns the message.
func (e *RejectedError) Error() string { return e.Msg }

// Reject returns an error by which a middleware rejects the operation, with a message
// formatted as by fmt.Sprintf. A program returning it fails like with any other error.
func Reject(format string, args ...any) error {
	return &RejectedError{Msg: sprintf(format, args)}
}
