package host

import (
	"context"
	"errors"
	"fmt"
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
}

// Run encodes the call, runs osprey_program on a pooled instance and decodes the result.
func (p *program) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	bp := inputs.Get().(*[]byte)
	defer inputs.Put(bp)
	b := append((*bp)[:0], abi.CallProgram)
	b = abi.AppendString(b, p.fqn)
	b = appendKeys(b, call.Keys)
	b = abi.AppendI64(b, call.Timestamp.UnixNano())
	b = appendRow(b, call.Row)
	*bp = b

	var res engine.ProgramResult
	err := p.m.call(ctx, roleProgram, p.fqn, call.Reader, b, func(out []byte) error {
		resp, d := abi.DecodeResponse(out)
		if err := d.Err(); err != nil {
			return err
		}
		if resp.Status != abi.StatusOK {
			return guestError{fmt.Errorf("the program failed: %s", resp.Message)}
		}
		r := d.ProgramResult()
		if err := d.Done(); err != nil {
			return err
		}
		v, err := valueToEngine(r.Value)
		if err != nil {
			return guestError{fmt.Errorf("the program returned a bad value: %w", err)}
		}
		res.Value = v
		if r.HasKeys {
			res.Keys = keysToEngine(r.Keys)
		}
		if r.HasTimestamp {
			res.Timestamp = time.Unix(0, r.Timestamp).UTC()
		}
		return nil
	})
	if err != nil {
		return engine.ProgramResult{}, fmt.Errorf("wasm %s: %w", p.fqn, unwrapGuest(err))
	}
	return res, nil
}

// middleware is a Wasm middleware attached to one feature.
type middleware struct {
	m    *module
	name string
}

// run is the engine.Middleware.
func (mw *middleware) run(ctx context.Context, call *engine.Call, v engine.Value) (engine.Value, error) {
	bp := inputs.Get().(*[]byte)
	defer inputs.Put(bp)
	b := append((*bp)[:0], abi.CallMiddleware, uint8(call.Stage), uint8(call.Op))
	b = abi.AppendString(b, call.Feature.FQN)
	b = appendKeys(b, call.Keys)
	b = abi.AppendI64(b, call.Timestamp.UnixNano())
	b = abi.AppendValue(b, valueToABI(v))
	*bp = b

	var out engine.Value
	err := mw.m.call(ctx, roleMiddleware, call.Feature.FQN, nil, b, func(resp []byte) error {
		r, d := abi.DecodeResponse(resp)
		if err := d.Err(); err != nil {
			return err
		}
		switch r.Status {
		case abi.StatusRejected:
			return guestError{fmt.Errorf("%w: %s", engine.ErrRejected, r.Message)}
		case abi.StatusError:
			return guestError{fmt.Errorf("the middleware failed: %s", r.Message)}
		}
		val := d.Value()
		if err := d.Done(); err != nil {
			return err
		}
		var err error
		if out, err = valueToEngine(val); err != nil {
			return guestError{fmt.Errorf("the middleware returned a bad value: %w", err)}
		}
		return nil
	})
	if err != nil {
		return engine.Null, fmt.Errorf("wasm middleware %s: %w", mw.name, unwrapGuest(err))
	}
	return out, nil
}

func unwrapGuest(err error) error {
	var ge guestError
	if errors.As(err, &ge) {
		return ge.err
	}
	return err
}
