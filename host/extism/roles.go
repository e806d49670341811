package extism

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// ContractVersion is the version of the roles' JSON contracts (docs/plugins.md), sent as
// "version" in every input.
const ContractVersion = 1

// Roles a plugin's functions play.
const (
	RoleMiddleware = "middleware"
	RoleEncoder    = "encoder"
	RoleConnector  = "connector"
)

// middlewareInput is the middleware role's input.
type middlewareInput struct {
	Version   int               `json:"version"`
	Feature   string            `json:"feature"`
	Keys      map[string]string `json:"keys"`
	Op        string            `json:"op"`
	Stage     string            `json:"stage"`
	Value     any               `json:"value"`
	Timestamp string            `json:"timestamp,omitempty"`
	Config    map[string]string `json:"config,omitempty"`
}

// encoderInput is the encoder role's input.
type encoderInput struct {
	Version   int               `json:"version"`
	Feature   string            `json:"feature,omitempty"`
	Primitive string            `json:"primitive"`
	Value     any               `json:"value"`
	Config    map[string]string `json:"config,omitempty"`
}

// connectorInput is the connector role's input.
type connectorInput struct {
	Version int               `json:"version"`
	Feature string            `json:"feature"`
	Keys    map[string]string `json:"keys"`
	Config  map[string]string `json:"config,omitempty"`
}

// output is every role's output: the value, as JSON.
type output struct {
	Value json.RawMessage `json:"value"`
}

// callJSON runs fn on in, JSON-encoded, and returns its output.
func (pl *Plugin) callJSON(ctx context.Context, fn string, in any) ([]byte, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %s: encoding the input: %w", pl.name, fn, err)
	}
	return pl.Call(ctx, fn, body)
}

// call runs fn on in (JSON-encoded) and returns the output's value converted to p.
func (pl *Plugin) callValue(ctx context.Context, fn string, in any, p engine.Primitive) (engine.Value, error) {
	out, err := pl.callJSON(ctx, fn, in)
	if err != nil {
		return engine.Value{}, err
	}
	var o output
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&o); err != nil || o.Value == nil {
		return engine.Value{}, fmt.Errorf("plugin %s: %s: %w: the output is not {\"value\": …} (%s)", pl.name, fn, ErrFailed, clip(string(out)))
	}
	var x any
	vd := json.NewDecoder(bytes.NewReader(o.Value))
	vd.UseNumber()
	if err := vd.Decode(&x); err != nil {
		return engine.Value{}, fmt.Errorf("plugin %s: %s: %w: %v", pl.name, fn, ErrFailed, err)
	}
	if x == nil {
		return engine.Value{}, nil // null: no value
	}
	v, err := engine.Convert(p, jsonNumbers(x))
	if err != nil {
		return engine.Value{}, fmt.Errorf("plugin %s: %s: %w: its value: %w", pl.name, fn, ErrFailed, err)
	}
	return v, nil
}

// jsonNumbers turns json.Number into int64 when integral, else float64, recursively in
// lists, for engine.Convert.
func jsonNumbers(x any) any {
	switch t := x.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = jsonNumbers(t[i])
		}
	}
	return x
}

// jsonValue is v as a JSON value: timestamps as RFC 3339 strings, lists as arrays.
func jsonValue(v engine.Value) any {
	switch v.Kind() {
	case engine.KindNull:
		return nil
	case engine.KindTimestamp:
		return v.Time().UTC().Format(time.RFC3339Nano)
	case engine.KindTimestampList:
		ts := v.Times()
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = t.UTC().Format(time.RFC3339Nano)
		}
		return out
	}
	return v.Interface()
}

// Middleware returns the middleware that fn of pl implements for feature f, with the
// reference's config (the middleware role's contract): the value the plugin returns replaces
// the value (converted to the feature's type), its error rejects the call.
func (pl *Plugin) Middleware(fn string, f *engine.Feature, config map[string]string) engine.Middleware {
	return func(ctx context.Context, call *engine.Call, v engine.Value) (engine.Value, error) {
		return pl.middleware(ctx, fn, f, config, call, v)
	}
}

// middleware runs fn of pl as a middleware of f.
func (pl *Plugin) middleware(ctx context.Context, fn string, f *engine.Feature, config map[string]string, call *engine.Call, v engine.Value) (engine.Value, error) {
	in := middlewareInput{Version: ContractVersion, Feature: f.FQN, Keys: call.Keys, Op: call.Op.String(),
		Stage: call.Stage.String(), Value: jsonValue(v), Config: config}
	if !call.Timestamp.IsZero() {
		in.Timestamp = call.Timestamp.UTC().Format(time.RFC3339Nano)
	}
	out, err := pl.callValue(ctx, fn, in, f.Primitive)
	if err != nil {
		return engine.Value{}, err
	}
	if out.IsNull() {
		return v, nil
	}
	return out, nil
}

// Encoder returns the selector encoding ([name]) that fn of pl implements (the encoder
// role's contract); its output is a string unless the plugin returns another JSON type,
// which is then its JSON text. Each encoding is bounded by the plugin's timeout and ctx.
func (pl *Plugin) Encoder(fn string, config map[string]string) engine.Encoder {
	return func(ctx context.Context, v engine.Value) (engine.Value, error) {
		return pl.encode(ctx, fn, "", config, v)
	}
}

// encode runs fn of pl as an encoder of v, a value of feature (or "").
func (pl *Plugin) encode(ctx context.Context, fn, feature string, config map[string]string, v engine.Value) (engine.Value, error) {
	in := encoderInput{Version: ContractVersion, Feature: feature, Primitive: v.Kind().String(), Value: jsonValue(v), Config: config}
	out, err := pl.callJSON(ctx, fn, in)
	if err != nil {
		return engine.Value{}, err
	}
	var o struct {
		Value any `json:"value"`
	}
	if err := json.Unmarshal(out, &o); err != nil {
		return engine.Value{}, fmt.Errorf("plugin %s: %s: %w: the output is not {\"value\": …} (%s)", pl.name, fn, ErrFailed, clip(string(out)))
	}
	if s, ok := o.Value.(string); ok {
		return engine.String(s), nil
	}
	raw, _ := json.Marshal(o.Value)
	return engine.String(string(raw)), nil
}

// Connector returns the program of an on-request feature f that fn of pl computes (the
// connector role's contract): the value for the call's keys, converted to f's type; null is
// no value.
func (pl *Plugin) Connector(fn string, f *engine.Feature, config map[string]string) engine.Program {
	return connector{pl: func() (*Plugin, error) { return pl, nil }, fn: fn, f: f, config: config}
}

// connector is a connector program; pl finds the plugin at each run (a Set's current one).
type connector struct {
	pl     func() (*Plugin, error)
	fn     string
	f      *engine.Feature
	config map[string]string
}

func (c connector) Run(ctx context.Context, call *engine.ProgramCall) (engine.ProgramResult, error) {
	pl, err := c.pl()
	if err != nil {
		return engine.ProgramResult{}, err
	}
	v, err := pl.callValue(ctx, c.fn, connectorInput{Version: ContractVersion, Feature: c.f.FQN, Keys: call.Keys, Config: c.config}, c.f.Primitive)
	if err != nil {
		return engine.ProgramResult{}, err
	}
	return engine.ProgramResult{Value: v}, nil
}
