package host

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
)

// inputs recycles the buffers calls are encoded into.
var inputs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// program is a feature's Wasm program (engine.Program).
type program struct {
	m   *module
	fqn string
	cfg guestConfig // spec.builder.config, for the guest (config.go)
	// storage are the names of spec.builder.storage, which storage_* calls match without
	// allocating (hostfuncs.go).
	storage []string
	// messages is set when the feature declares spec.builder.messages: it receives message
	// calls (ABI 1.2, checked when it was loaded).
	messages bool
}

// Run encodes the call — a program call (ABI.md §4.1), or a message call (§4.6) when
// call.Message is set — runs osprey_program on a pooled instance and decodes the result.
func (p *program) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	bp := inputs.Get().(*[]byte)
	defer inputs.Put(bp)
	var b []byte
	if m := call.Message; m != nil {
		if err := p.checkMessage(m); err != nil {
			return engine.ProgramResult{}, fmt.Errorf("wasm %s: %w", p.fqn, err)
		}
		b = append((*bp)[:0], abi.CallMessage)
		b = abi.AppendString(b, p.fqn)
		b = appendKeys(b, call.Keys)
		b = abi.AppendI64(b, call.Timestamp.UnixNano())
		b = abi.AppendString(b, m.From.FQN)
		b = appendKeys(b, m.From.Keys)
		b = abi.AppendUvarint(b, uint64(m.Hops))
		b = abi.AppendUvarint(b, uint64(m.Attempt))
		b = appendValue(b, m.Value)
	} else {
		b = append((*bp)[:0], abi.CallProgram)
		b = abi.AppendString(b, p.fqn)
		b = appendKeys(b, call.Keys)
		b = abi.AppendI64(b, call.Timestamp.UnixNano())
		b = appendRow(b, call.Row)
	}
	*bp = b

	env := callEnv{fqn: p.fqn, reader: call.Reader, inv: call.Invocation, storage: p.storage}
	inst, out, err := p.m.begin(ctx, roleProgram, env, p.cfg, b)
	if err != nil {
		return engine.ProgramResult{}, fmt.Errorf("wasm %s: %w", p.fqn, err)
	}
	res, err := decodeProgramResponse(out)
	if err = p.m.end(inst, err); err != nil {
		return engine.ProgramResult{}, fmt.Errorf("wasm %s: %w", p.fqn, unwrapGuest(err))
	}
	return res, nil
}

// checkMessage checks that a message call may be sent to the program, and that it encodes
// as the ABI allows (hops and attempt from 1, a message of a primitive kind).
func (p *program) checkMessage(m *engine.Received) error {
	switch k := m.Value.Kind(); {
	case !p.messages:
		return fmt.Errorf("%w: a message for a feature that declares no spec.builder.messages (it receives no messages)", engine.ErrUnsupported)
	case m.Hops < 1 || m.Hops > abi.MaxMessageSize || m.Attempt < 1 || m.Attempt > abi.MaxMessageSize:
		return fmt.Errorf("%w: a message with hops %d and attempt %d (each must be 1 to %d)", engine.ErrMessage, m.Hops, m.Attempt, abi.MaxMessageSize)
	case k == engine.KindNull || k == engine.KindWindow:
		return fmt.Errorf("%w: a message is %s (it must be a value of a primitive kind)", engine.ErrMessage, k)
	}
	return nil
}

func decodeProgramResponse(out []byte) (engine.ProgramResult, error) {
	if v, ok := scalarResponse(out); ok {
		return engine.ProgramResult{Value: v}, nil
	}
	var res engine.ProgramResult
	var d abi.Decoder
	d.Reset(out)
	resp := d.Response()
	if err := d.Err(); err != nil {
		return res, err
	}
	if resp.Status != abi.StatusOK {
		return res, guestError{err: fmt.Errorf("the program failed: %s", resp.Message), status: true}
	}
	r := d.ProgramResult()
	if err := d.Done(); err != nil {
		return res, err
	}
	v, err := valueToEngine(r.Value)
	if err != nil {
		return res, guestError{err: fmt.Errorf("the program returned a bad value: %w", err)}
	}
	res.Value = v
	if r.HasKeys {
		res.Keys = keysToEngine(r.Keys)
	}
	if r.HasTimestamp {
		res.Timestamp = time.Unix(0, r.Timestamp).UTC()
	}
	return res, nil
}

// scalarResponse decodes the common program response — status OK, an int, float, bool or
// timestamp, no keys or timestamp of its own — or reports that the general decoder must.
// (abi.Decoder builds an abi.Value, a 200-byte struct, on the way: a sixth of the host's
// per-call time.)
func scalarResponse(out []byte) (engine.Value, bool) {
	if len(out) < 3 || out[0] != abi.StatusOK {
		return engine.Null, false
	}
	switch tag := abi.Tag(out[1]); {
	case len(out) == 11 && out[10] == 0 && (tag == abi.TagInt || tag == abi.TagFloat || tag == abi.TagTimestamp):
		bits := binary.LittleEndian.Uint64(out[2:])
		switch tag {
		case abi.TagInt:
			return engine.Int(int64(bits)), true
		case abi.TagTimestamp:
			return engine.Timestamp(time.Unix(0, int64(bits))), true
		}
		if f := math.Float64frombits(bits); !math.IsNaN(f) && !math.IsInf(f, 0) {
			return engine.Float(f), true
		}
	case len(out) == 4 && out[3] == 0 && tag == abi.TagBool && out[2] <= 1:
		return engine.Bool(out[2] == 1), true
	}
	return engine.Null, false
}

// middleware is a Wasm middleware attached to one feature.
type middleware struct {
	m    *module
	name string
	cfg  guestConfig // the middleware's config, for the guest (config.go)
}

// run is the engine.Middleware.
func (mw *middleware) run(ctx context.Context, call *engine.Call, v engine.Value) (engine.Value, error) {
	bp := inputs.Get().(*[]byte)
	defer inputs.Put(bp)
	b := append((*bp)[:0], abi.CallMiddleware, uint8(call.Stage), uint8(call.Op))
	b = abi.AppendString(b, call.Feature.FQN)
	b = appendKeys(b, call.Keys)
	b = abi.AppendI64(b, call.Timestamp.UnixNano())
	b = appendValue(b, v)
	*bp = b

	inst, resp, err := mw.m.begin(ctx, roleMiddleware, callEnv{fqn: call.Feature.FQN}, mw.cfg, b)
	if err != nil {
		return engine.Null, fmt.Errorf("wasm middleware %s: %w", mw.name, err)
	}
	out, err := decodeMiddlewareResponse(resp)
	if err = mw.m.end(inst, err); err != nil {
		return engine.Null, fmt.Errorf("wasm middleware %s: %w", mw.name, unwrapGuest(err))
	}
	return out, nil
}

func decodeMiddlewareResponse(resp []byte) (engine.Value, error) {
	var d abi.Decoder
	d.Reset(resp)
	r := d.Response()
	if err := d.Err(); err != nil {
		return engine.Null, err
	}
	switch r.Status {
	case abi.StatusRejected:
		return engine.Null, guestError{err: fmt.Errorf("%w: %s", engine.ErrRejected, r.Message)}
	case abi.StatusError:
		return engine.Null, guestError{err: fmt.Errorf("the middleware failed: %s", r.Message), status: true}
	}
	val := d.Value()
	if err := d.Done(); err != nil {
		return engine.Null, err
	}
	out, err := valueToEngine(val)
	if err != nil {
		return engine.Null, guestError{err: fmt.Errorf("the middleware returned a bad value: %w", err)}
	}
	return out, nil
}

// unwrapGuest drops the guestError wrapper (whose message is its cause's), keeping
// ErrGuestFailed matchable for a guest's own error status.
func unwrapGuest(err error) error {
	var ge guestError
	if errors.As(err, &ge) {
		if ge.status {
			return statusError{ge.err}
		}
		return ge.err
	}
	return err
}

// statusError is a guest's own error status on its way out of the host.
type statusError struct{ err error }

func (e statusError) Error() string        { return e.err.Error() }
func (e statusError) Unwrap() error        { return e.err }
func (e statusError) Is(target error) bool { return target == ErrGuestFailed }
