// Package abitest reads the ABI's golden vectors (abi/testdata/vectors.json, ABI.md §7) and
// converts between their JSON meanings, the abi package's Go types and the wire encoding.
// SDK tests use it to check their own decoders and encoders against the vectors.
//
// It is a test helper: it uses encoding/json, which a guest should not link, so guests must
// not import it.
package abitest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"

	"github.com/osprey-ml/osprey/abi"
)

// Kind is the kind of message a vector holds.
type Kind string

// Vector kinds (ABI.md §7).
const (
	KindValue          Kind = "value"           // a Value (§5.2); Go type abi.Value
	KindKeys           Kind = "keys"            // a Keys (§5.4); Go type []abi.KV
	KindRow            Kind = "row"             // a Row (§5.5); Go type []abi.Field
	KindProgramCall    Kind = "program_call"    // §4.1 input; Go type abi.ProgramCall
	KindMiddlewareCall Kind = "middleware_call" // §4.2 input; Go type abi.MiddlewareCall
	KindProgramResult  Kind = "program_result"  // an OK response with a ProgramResult; abi.ProgramResult
	KindValueResult    Kind = "value_result"    // an OK response with a Value; ValueResult
	KindErrorResponse  Kind = "error_response"  // an error or rejected response; abi.Response
	KindGetResult      Kind = "get_result"      // a GetResult (§5.6); abi.GetResult
	KindConfigureCall  Kind = "configure_call"  // §4.4 input (ABI 1.1); abi.ConfigureCall
	KindStorageValue   Kind = "storage_value"   // storage_set's val, storage_get's result (§4.5, ABI 1.2); StorageValue
	KindMessageCall    Kind = "message_call"    // §4.6 input (ABI 1.2); abi.MessageCall
	KindMessageValue   Kind = "message_value"   // send's and send_after's msg (§4.6, ABI 1.2); MessageValue
	KindEgressRow      Kind = "egress_row"      // egress's row (§4.6, ABI 1.2); EgressRow
)

// Kinds lists every vector kind.
var Kinds = []Kind{KindValue, KindKeys, KindRow, KindProgramCall, KindMiddlewareCall,
	KindProgramResult, KindValueResult, KindErrorResponse, KindGetResult, KindConfigureCall, KindStorageValue,
	KindMessageCall, KindMessageValue, KindEgressRow}

// ValueResult is the Go form of a value_result vector: a middleware's successful response.
type ValueResult struct{ Value abi.Value }

// StorageValue is the Go form of a storage_value vector: the value storage_set takes and
// storage_get returns (ABI 1.2), Null or a primitive kind.
type StorageValue struct{ Value abi.Value }

// MessageValue is the Go form of a message_value vector: the msg send and send_after take
// (ABI 1.2), a storage value. (Null is a valid encoding, which the host refuses as an error
// returned to the guest: no valid vector holds it.)
type MessageValue struct{ Value abi.Value }

// EgressRow is the Go form of an egress_row vector: the row egress takes (ABI 1.2), a Row
// whose values are storage values.
type EgressRow []abi.Field

// Vector is one golden vector.
type Vector struct {
	// Name identifies the vector.
	Name string `json:"name"`
	// Kind is the kind of message Hex holds.
	Kind Kind `json:"kind"`
	// Hex is the message's bytes, lower-case hexadecimal.
	Hex string `json:"hex"`
	// Meaning is the message in JSON (see ABI.md §7); absent for an invalid vector.
	Meaning json.RawMessage `json:"meaning,omitempty"`
	// Error marks an invalid message, which every decoder must reject.
	Error bool `json:"error,omitempty"`
	// Reason says, for an invalid vector, what is wrong with it.
	Reason string `json:"reason,omitempty"`
}

// Bytes returns the vector's message bytes.
func (v Vector) Bytes() ([]byte, error) {
	b, err := hex.DecodeString(v.Hex)
	if err != nil {
		return nil, fmt.Errorf("vector %s: hex: %w", v.Name, err)
	}
	return b, nil
}

// Load reads a vectors file.
func Load(path string) ([]Vector, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var vs []Vector
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&vs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, v := range vs {
		if !slicesContains(Kinds, v.Kind) {
			return nil, fmt.Errorf("%s: vector %s: unknown kind %q", path, v.Name, v.Kind)
		}
		if v.Error == (v.Meaning != nil) {
			return nil, fmt.Errorf("%s: vector %s: want exactly one of meaning and error", path, v.Name)
		}
	}
	return vs, nil
}

func slicesContains(ks []Kind, k Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// Decode decodes a whole message of the given kind with the abi package's decoders; bytes
// left over are an error. The result has the Go type listed with the kind's constant.
func Decode(kind Kind, b []byte) (any, error) {
	d := abi.NewDecoder(b)
	var msg any
	switch kind {
	case KindValue:
		msg = d.Value()
	case KindKeys:
		msg = d.Keys()
	case KindRow:
		msg = d.Row()
	case KindProgramCall:
		return abi.DecodeProgramCall(b)
	case KindMiddlewareCall:
		return abi.DecodeMiddlewareCall(b)
	case KindProgramResult, KindValueResult, KindErrorResponse:
		var r abi.Response
		r, d = abi.DecodeResponse(b)
		if d.Err() != nil {
			return nil, d.Err()
		}
		switch {
		case kind == KindErrorResponse && r.Status != abi.StatusOK:
			msg = r
		case kind == KindErrorResponse:
			return nil, fmt.Errorf("%w: status 0 (ok) in an error response", abi.ErrMalformed)
		case r.Status != abi.StatusOK:
			return nil, fmt.Errorf("%w: status %d, want 0 (ok)", abi.ErrMalformed, r.Status)
		case kind == KindProgramResult:
			msg = d.ProgramResult()
		default:
			msg = ValueResult{d.Value()}
		}
	case KindGetResult:
		msg = d.GetResult()
	case KindConfigureCall:
		return abi.DecodeConfigureCall(b)
	case KindStorageValue:
		msg = StorageValue{d.StorageValue()}
	case KindMessageCall:
		return abi.DecodeMessageCall(b)
	case KindMessageValue:
		msg = MessageValue{d.MessageValue()}
	case KindEgressRow:
		msg = EgressRow(d.EgressRow())
	default:
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	if err := d.Done(); err != nil {
		return nil, err
	}
	return msg, nil
}

// Encode encodes a message (one of the Go types Decode returns) with the abi package's
// encoders.
func Encode(msg any) ([]byte, error) {
	switch m := msg.(type) {
	case abi.Value:
		return abi.AppendValue(nil, m), nil
	case []abi.KV:
		return abi.AppendKeys(nil, m), nil
	case []abi.Field:
		return abi.AppendRow(nil, m), nil
	case abi.ProgramCall:
		return abi.AppendProgramCall(nil, &m), nil
	case abi.MiddlewareCall:
		return abi.AppendMiddlewareCall(nil, &m), nil
	case abi.ProgramResult:
		return abi.AppendProgramResult(nil, &m), nil
	case ValueResult:
		return abi.AppendValueResult(nil, m.Value), nil
	case abi.Response:
		return abi.AppendErrorResponse(nil, m.Status, m.Message), nil
	case abi.GetResult:
		return abi.AppendGetResult(nil, &m), nil
	case abi.ConfigureCall:
		return abi.AppendConfigureCall(nil, &m), nil
	case StorageValue:
		return abi.AppendValue(nil, m.Value), nil
	case abi.MessageCall:
		return abi.AppendMessageCall(nil, &m), nil
	case MessageValue:
		return abi.AppendValue(nil, m.Value), nil
	case EgressRow:
		return abi.AppendRow(nil, m), nil
	}
	return nil, fmt.Errorf("abitest: cannot encode %T", msg)
}

// KindOf returns the vector kind of a message.
func KindOf(msg any) (Kind, error) {
	switch msg.(type) {
	case abi.Value:
		return KindValue, nil
	case []abi.KV:
		return KindKeys, nil
	case []abi.Field:
		return KindRow, nil
	case abi.ProgramCall:
		return KindProgramCall, nil
	case abi.MiddlewareCall:
		return KindMiddlewareCall, nil
	case abi.ProgramResult:
		return KindProgramResult, nil
	case ValueResult:
		return KindValueResult, nil
	case abi.Response:
		return KindErrorResponse, nil
	case abi.GetResult:
		return KindGetResult, nil
	case abi.ConfigureCall:
		return KindConfigureCall, nil
	case StorageValue:
		return KindStorageValue, nil
	case abi.MessageCall:
		return KindMessageCall, nil
	case MessageValue:
		return KindMessageValue, nil
	case EgressRow:
		return KindEgressRow, nil
	}
	return "", fmt.Errorf("abitest: no vector kind for %T", msg)
}

// Equal reports whether two messages have the same meaning. Floats compare by their bits,
// so -0.0 differs from 0.0; a nil and an empty list are equal.
func Equal(a, b any) bool {
	ea, err1 := Encode(a)
	eb, err2 := Encode(b)
	return err1 == nil && err2 == nil && reflect.TypeOf(a) == reflect.TypeOf(b) && bytes.Equal(ea, eb)
}

// Meaning JSON (ABI.md §7).

var stageNames = map[uint8]string{abi.StagePreGet: "preGet", abi.StagePostGet: "postGet", abi.StagePreSet: "preSet", abi.StagePostSet: "postSet"}
var opNames = map[uint8]string{abi.OpGet: "get", abi.OpSet: "set", abi.OpAppend: "append", abi.OpIncr: "incr", abi.OpUpdate: "update"}
var statusNames = map[uint8]string{abi.StatusError: "error", abi.StatusRejected: "rejected"}

func lookupName(names map[uint8]string, s, what string) (uint8, error) {
	for k, v := range names {
		if v == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown %s %q", what, s)
}

// MeaningOf returns a message's meaning in JSON, indented by nothing.
func MeaningOf(msg any) (json.RawMessage, error) {
	var x any
	switch m := msg.(type) {
	case abi.Value:
		x = valueJSON(m)
	case []abi.KV:
		x = keysJSON(m)
	case []abi.Field:
		x = rowJSON(m)
	case abi.ProgramCall:
		x = ordered{{"fqn", m.FQN}, {"keys", keysJSON(m.Keys)}, {"timestamp", m.Timestamp}, {"row", rowJSON(m.Row)}}
	case abi.MiddlewareCall:
		x = ordered{{"stage", stageNames[m.Stage]}, {"op", opNames[m.Op]}, {"fqn", m.FQN}, {"keys", keysJSON(m.Keys)},
			{"timestamp", m.Timestamp}, {"value", valueJSON(m.Value)}}
	case abi.ProgramResult:
		o := ordered{{"value", valueJSON(m.Value)}}
		if m.HasKeys {
			o = append(o, kv{"keys", keysJSON(m.Keys)})
		}
		if m.HasTimestamp {
			o = append(o, kv{"timestamp", m.Timestamp})
		}
		x = o
	case ValueResult:
		x = ordered{{"value", valueJSON(m.Value)}}
	case abi.Response:
		x = ordered{{"status", statusNames[m.Status]}, {"message", m.Message}}
	case abi.GetResult:
		x = ordered{{"found", m.Found}, {"value", valueJSON(m.Value)}, {"timestamp", m.Timestamp}, {"fresh", m.Fresh}}
	case abi.ConfigureCall:
		x = ordered{{"config", keysJSON(m.Config)}}
	case StorageValue:
		x = ordered{{"value", valueJSON(m.Value)}}
	case abi.MessageCall:
		x = ordered{{"fqn", m.FQN}, {"keys", keysJSON(m.Keys)}, {"timestamp", m.Timestamp},
			{"from_fqn", m.FromFQN}, {"from_keys", keysJSON(m.FromKeys)}, {"hops", m.Hops}, {"attempt", m.Attempt},
			{"message", valueJSON(m.Message)}}
	case MessageValue:
		x = ordered{{"value", valueJSON(m.Value)}}
	case EgressRow:
		x = rowJSON(m)
	default:
		return nil, fmt.Errorf("abitest: no meaning for %T", msg)
	}
	return json.Marshal(x)
}

// kv and ordered marshal a JSON object with its keys in a fixed order.
type kv struct {
	k string
	v any
}

type ordered []kv

func (o ordered) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, e := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(e.k)
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// jsonFloat marshals a float exactly, keeping -0.
type jsonFloat float64

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	x := float64(f)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil, fmt.Errorf("abitest: %v has no JSON form", x)
	}
	return strconv.AppendFloat(nil, x, 'g', -1, 64), nil
}

func floats(xs []float64) []jsonFloat {
	out := make([]jsonFloat, len(xs))
	for i, x := range xs {
		out[i] = jsonFloat(x)
	}
	return out
}

func valueJSON(v abi.Value) any {
	switch v.Tag {
	case abi.TagNull:
		return nil
	case abi.TagInt:
		return ordered{{"int", v.I}}
	case abi.TagFloat:
		return ordered{{"float", jsonFloat(v.F)}}
	case abi.TagString:
		return ordered{{"string", v.S}}
	case abi.TagBool:
		return ordered{{"bool", v.I != 0}}
	case abi.TagTimestamp:
		return ordered{{"timestamp", v.I}}
	case abi.TagIntList:
		return ordered{{"ints", nonNil(v.Ints)}}
	case abi.TagFloatList:
		return ordered{{"floats", floats(v.Floats)}}
	case abi.TagStringList:
		return ordered{{"strings", nonNil(v.Strs)}}
	case abi.TagBoolList:
		return ordered{{"bools", nonNil(v.Bools)}}
	case abi.TagTimestampList:
		return ordered{{"timestamps", nonNil(v.Times)}}
	case abi.TagWindow:
		w := v.W
		return ordered{{"window", ordered{{"mask", w.Mask}, {"sum", jsonFloat(w.Sum)}, {"count", jsonFloat(w.Count)},
			{"min", jsonFloat(w.Min)}, {"max", jsonFloat(w.Max)}}}}
	}
	return ordered{{"tag", uint8(v.Tag)}} // not a valid value: MeaningOf's caller sees it in the output
}

func nonNil[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

func keysJSON(keys []abi.KV) [][2]string {
	out := make([][2]string, len(keys))
	for i, k := range keys {
		out[i] = [2]string{k.Name, k.Value}
	}
	return out
}

func rowJSON(row []abi.Field) [][2]any {
	out := make([][2]any, len(row))
	for i, f := range row {
		out[i] = [2]any{f.Name, valueJSON(f.Value)}
	}
	return out
}

// FromMeaning parses a meaning of the given kind into the Go type Decode returns for it.
// It is strict: unknown members, missing members and numbers that do not fit are errors.
func FromMeaning(kind Kind, meaning json.RawMessage) (any, error) {
	var x any
	dec := json.NewDecoder(bytes.NewReader(meaning))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	p := parser{}
	var msg any
	switch kind {
	case KindValue:
		msg = p.value(x, "meaning")
	case KindKeys:
		msg = p.keys(x, "meaning")
	case KindRow:
		msg = p.row(x, "meaning")
	case KindProgramCall:
		o := p.object(x, "meaning", "fqn", "keys", "timestamp", "row")
		msg = abi.ProgramCall{FQN: p.str(o["fqn"], "fqn"), Keys: p.keys(o["keys"], "keys"),
			Timestamp: p.i64(o["timestamp"], "timestamp"), Row: p.row(o["row"], "row")}
	case KindMiddlewareCall:
		o := p.object(x, "meaning", "stage", "op", "fqn", "keys", "timestamp", "value")
		c := abi.MiddlewareCall{FQN: p.str(o["fqn"], "fqn"), Keys: p.keys(o["keys"], "keys"),
			Timestamp: p.i64(o["timestamp"], "timestamp"), Value: p.value(o["value"], "value")}
		c.Stage = p.name(stageNames, o["stage"], "stage")
		c.Op = p.name(opNames, o["op"], "op")
		msg = c
	case KindProgramResult:
		o := p.object(x, "meaning", "value", "keys?", "timestamp?")
		r := abi.ProgramResult{Value: p.value(o["value"], "value")}
		if k, ok := o["keys"]; ok {
			r.HasKeys, r.Keys = true, p.keys(k, "keys")
		}
		if t, ok := o["timestamp"]; ok {
			r.HasTimestamp, r.Timestamp = true, p.i64(t, "timestamp")
		}
		msg = r
	case KindValueResult:
		o := p.object(x, "meaning", "value")
		msg = ValueResult{p.value(o["value"], "value")}
	case KindErrorResponse:
		o := p.object(x, "meaning", "status", "message")
		msg = abi.Response{Status: p.name(statusNames, o["status"], "status"), Message: p.str(o["message"], "message")}
	case KindGetResult:
		o := p.object(x, "meaning", "found", "value", "timestamp", "fresh")
		msg = abi.GetResult{Found: p.boolean(o["found"], "found"), Value: p.value(o["value"], "value"),
			Timestamp: p.i64(o["timestamp"], "timestamp"), Fresh: p.boolean(o["fresh"], "fresh")}
	case KindConfigureCall:
		o := p.object(x, "meaning", "config")
		msg = abi.ConfigureCall{Config: p.keys(o["config"], "config")}
	case KindStorageValue:
		o := p.object(x, "meaning", "value")
		msg = StorageValue{p.value(o["value"], "value")}
	case KindMessageCall:
		o := p.object(x, "meaning", "fqn", "keys", "timestamp", "from_fqn", "from_keys", "hops", "attempt", "message")
		msg = abi.MessageCall{FQN: p.str(o["fqn"], "fqn"), Keys: p.keys(o["keys"], "keys"),
			Timestamp: p.i64(o["timestamp"], "timestamp"), FromFQN: p.str(o["from_fqn"], "from_fqn"),
			FromKeys: p.keys(o["from_keys"], "from_keys"), Hops: p.u32(o["hops"], "hops"),
			Attempt: p.u32(o["attempt"], "attempt"), Message: p.value(o["message"], "message")}
	case KindMessageValue:
		o := p.object(x, "meaning", "value")
		msg = MessageValue{p.value(o["value"], "value")}
	case KindEgressRow:
		msg = EgressRow(p.row(x, "meaning"))
	default:
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	if p.err != nil {
		return nil, p.err
	}
	return msg, nil
}

// parser converts decoded JSON (with json.Number) to abi types, keeping the first error.
type parser struct{ err error }

func (p *parser) fail(path, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
	}
}

// object checks that x is an object with exactly the given members ("name?" = optional).
func (p *parser) object(x any, path string, members ...string) map[string]any {
	o, ok := x.(map[string]any)
	if !ok {
		p.fail(path, "want an object, got %s", jsonType(x))
		return nil
	}
	allowed := map[string]bool{}
	for _, m := range members {
		name, optional := m, false
		if m[len(m)-1] == '?' {
			name, optional = m[:len(m)-1], true
		}
		allowed[name] = true
		if _, ok := o[name]; !ok && !optional {
			p.fail(path, "missing %q", name)
		}
	}
	for k := range o {
		if !allowed[k] {
			p.fail(path, "unknown member %q", k)
		}
	}
	return o
}

func jsonType(x any) string {
	switch x.(type) {
	case nil:
		return "null"
	case bool:
		return "a bool"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", x)
}

func (p *parser) str(x any, path string) string {
	s, ok := x.(string)
	if !ok {
		p.fail(path, "want a string, got %s", jsonType(x))
	}
	return s
}

func (p *parser) boolean(x any, path string) bool {
	b, ok := x.(bool)
	if !ok {
		p.fail(path, "want a bool, got %s", jsonType(x))
	}
	return b
}

func (p *parser) i64(x any, path string) int64 {
	n, ok := x.(json.Number)
	if !ok {
		p.fail(path, "want an integer, got %s", jsonType(x))
		return 0
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		p.fail(path, "want a 64-bit integer, got %s", n)
	}
	return i
}

func (p *parser) u8(x any, path string) uint8 {
	i := p.i64(x, path)
	if i < 0 || i > 255 {
		p.fail(path, "%d does not fit in a byte", i)
	}
	return uint8(i)
}

func (p *parser) u32(x any, path string) uint32 {
	i := p.i64(x, path)
	if i < 0 || i > math.MaxUint32 {
		p.fail(path, "%d does not fit in 32 bits", i)
	}
	return uint32(i)
}

func (p *parser) f64(x any, path string) float64 {
	n, ok := x.(json.Number)
	if !ok {
		p.fail(path, "want a number, got %s", jsonType(x))
		return 0
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		p.fail(path, "%v", err)
	}
	return f
}

func (p *parser) array(x any, path string) []any {
	a, ok := x.([]any)
	if !ok {
		p.fail(path, "want an array, got %s", jsonType(x))
	}
	return a
}

func (p *parser) name(names map[uint8]string, x any, path string) uint8 {
	v, err := lookupName(names, p.str(x, path), path)
	if err != nil {
		p.fail(path, "%v", err)
	}
	return v
}

func (p *parser) keys(x any, path string) []abi.KV {
	var keys []abi.KV
	for i, e := range p.array(x, path) {
		ep := fmt.Sprintf("%s[%d]", path, i)
		pair := p.array(e, ep)
		if len(pair) != 2 {
			p.fail(ep, "want [name, value]")
			continue
		}
		keys = append(keys, abi.KV{Name: p.str(pair[0], ep+"[0]"), Value: p.str(pair[1], ep+"[1]")})
	}
	return keys
}

func (p *parser) row(x any, path string) []abi.Field {
	var row []abi.Field
	for i, e := range p.array(x, path) {
		ep := fmt.Sprintf("%s[%d]", path, i)
		pair := p.array(e, ep)
		if len(pair) != 2 {
			p.fail(ep, "want [name, value]")
			continue
		}
		row = append(row, abi.Field{Name: p.str(pair[0], ep+"[0]"), Value: p.value(pair[1], ep+"[1]")})
	}
	return row
}

func (p *parser) value(x any, path string) abi.Value {
	if x == nil {
		return abi.Null()
	}
	o, ok := x.(map[string]any)
	if !ok || len(o) != 1 {
		p.fail(path, "want null or an object with one member, got %s", jsonType(x))
		return abi.Value{}
	}
	for k, e := range o {
		ep := path + "." + k
		switch k {
		case "int":
			return abi.Int(p.i64(e, ep))
		case "float":
			return abi.Float(p.f64(e, ep))
		case "string":
			return abi.String(p.str(e, ep))
		case "bool":
			return abi.Bool(p.boolean(e, ep))
		case "timestamp":
			return abi.Timestamp(p.i64(e, ep))
		case "ints", "timestamps":
			xs := []int64{}
			for i, y := range p.array(e, ep) {
				xs = append(xs, p.i64(y, fmt.Sprintf("%s[%d]", ep, i)))
			}
			if k == "ints" {
				return abi.Value{Tag: abi.TagIntList, Ints: xs}
			}
			return abi.Value{Tag: abi.TagTimestampList, Times: xs}
		case "floats":
			xs := []float64{}
			for i, y := range p.array(e, ep) {
				xs = append(xs, p.f64(y, fmt.Sprintf("%s[%d]", ep, i)))
			}
			return abi.Value{Tag: abi.TagFloatList, Floats: xs}
		case "strings":
			xs := []string{}
			for i, y := range p.array(e, ep) {
				xs = append(xs, p.str(y, fmt.Sprintf("%s[%d]", ep, i)))
			}
			return abi.Value{Tag: abi.TagStringList, Strs: xs}
		case "bools":
			xs := []bool{}
			for i, y := range p.array(e, ep) {
				xs = append(xs, p.boolean(y, fmt.Sprintf("%s[%d]", ep, i)))
			}
			return abi.Value{Tag: abi.TagBoolList, Bools: xs}
		case "window":
			w := p.object(e, ep, "mask", "sum", "count", "min", "max")
			return abi.Value{Tag: abi.TagWindow, W: abi.Window{Mask: p.u8(w["mask"], ep+".mask"),
				Sum: p.f64(w["sum"], ep+".sum"), Count: p.f64(w["count"], ep+".count"),
				Min: p.f64(w["min"], ep+".min"), Max: p.f64(w["max"], ep+".max")}}
		default:
			p.fail(path, "unknown value kind %q", k)
		}
	}
	return abi.Value{}
}

// Check runs one vector through the abi package: a valid vector must decode, re-encode to
// the same bytes, and mean what its meaning says (whose own encoding must be the same bytes);
// an invalid one must fail to decode with an error wrapping abi.ErrMalformed.
func Check(v Vector) error {
	b, err := v.Bytes()
	if err != nil {
		return err
	}
	msg, err := Decode(v.Kind, b)
	if v.Error {
		if err == nil {
			return fmt.Errorf("vector %s (%s): decoded, want an error (%s)", v.Name, v.Kind, v.Reason)
		}
		if !errors.Is(err, abi.ErrMalformed) {
			return fmt.Errorf("vector %s: error %q does not wrap abi.ErrMalformed", v.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("vector %s (%s): %w", v.Name, v.Kind, err)
	}
	re, err := Encode(msg)
	if err != nil {
		return err
	}
	if !bytes.Equal(re, b) {
		return fmt.Errorf("vector %s: re-encoded as %x, want %s", v.Name, re, v.Hex)
	}
	want, err := FromMeaning(v.Kind, v.Meaning)
	if err != nil {
		return fmt.Errorf("vector %s: meaning: %w", v.Name, err)
	}
	wb, err := Encode(want)
	if err != nil {
		return err
	}
	if !bytes.Equal(wb, b) {
		return fmt.Errorf("vector %s: the meaning encodes as %x, want %s", v.Name, wb, v.Hex)
	}
	if !Equal(msg, want) {
		return fmt.Errorf("vector %s: decoded %+v, want %+v", v.Name, msg, want)
	}
	got, err := MeaningOf(msg)
	if err != nil {
		return err
	}
	if !sameJSON(got, v.Meaning) {
		return fmt.Errorf("vector %s: meaning %s, want %s", v.Name, got, v.Meaning)
	}
	return nil
}

// sameJSON compares two JSON texts by value (numbers by their text, so -0 ≠ 0).
func sameJSON(a, b []byte) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
