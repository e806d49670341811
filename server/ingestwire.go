package server

import (
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// An Ingest of typed rows spent a third of the server's CPU decoding them: protobuf-go
// builds each row's map<string, Value> by reflection, a message and a oneof wrapper per
// field, which rowFromTyped then copied into an engine.Row. The Ingest handler receives an
// ingestRequest instead, whose typed rows ingestCodec decodes from the wire straight into
// engine rows, with the field names interned. The fast path takes the encoding every
// protobuf library writes for the common values — one map entry per field, key then value,
// an int, float, string or bool — and hands any other row (lists, timestamps, nulls,
// repeated or unknown fields, anything malformed) to proto.Unmarshal and rowFromTyped, so
// every row decodes exactly as before (FuzzIngestWire holds the two to it). See
// RATIONALE.md, "Typed rows straight off the wire".

// ingestRequest is the Ingest handler's request: the IngestRequest, whose typed_rows the
// binary codec leaves empty, having decoded them into typed (and the first that does not
// convert into typedErr, a *fieldError).
type ingestRequest struct {
	ospreyv1.IngestRequest
	decoded  bool // typed holds the typed rows
	typed    []engine.Row
	typedErr error
}

// ingestCodec is the binary Protobuf codec of the Ingest handler: ingestRequest's typed
// rows off the wire (decodeIngestRequest), everything else with proto.
type ingestCodec struct{}

func (ingestCodec) Name() string { return "proto" }

func (ingestCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.Marshal(pm)
}

func (ingestCodec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, pm)
}

func (ingestCodec) Unmarshal(b []byte, m any) error {
	if r, ok := m.(*ingestRequest); ok {
		if err := decodeIngestRequest(b, r); err != nil {
			return fmt.Errorf("unmarshal into %T: %w", &r.IngestRequest, err)
		}
		return nil
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if err := proto.Unmarshal(b, pm); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", m, err)
	}
	return nil
}

// ingestTypedRows is IngestRequest.typed_rows' field number.
const ingestTypedRows = 3

// decodeIngestRequest decodes the binary encoding of an IngestRequest into r: what
// proto.Unmarshal and rowFromTyped of each typed row make of it, exactly. The error is the
// wire's; a row that does not convert is reported in r.typedErr.
func decodeIngestRequest(b []byte, r *ingestRequest) error {
	var rest []byte   // every field but typed_rows, for proto.Unmarshal
	var rows [][]byte // each typed row's encoding, in order
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		if num == ingestTypedRows && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[n:])
			rows = append(rows, v)
		} else {
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	if err := proto.Unmarshal(rest, &r.IngestRequest); err != nil {
		return err
	}
	r.decoded, r.typed, r.typedErr = true, make([]engine.Row, len(rows)), nil
	names := map[string]string{}
	for i, rb := range rows {
		row, ok := fastRow(rb, names)
		if !ok {
			var m ospreyv1.Row
			if err := proto.Unmarshal(rb, &m); err != nil {
				return err
			}
			var err error
			if row, err = rowFromTyped(fmt.Sprintf("typed_rows[%d]", i), &m); err != nil && r.typedErr == nil {
				r.typedErr = err
			}
		}
		r.typed[i] = row
	}
	return nil
}

// fastRow decodes a Row in the common encoding: each field one map entry of a key and then
// a Value holding one int, float (finite), string or bool, each once. ok is false for any
// other encoding, valid or not, which the caller decodes the slow way. names interns the
// field names.
func fastRow(b []byte, names map[string]string) (engine.Row, bool) {
	fields := 0
	for rest := b; len(rest) > 0; fields++ {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, false
		}
		_, m := protowire.ConsumeBytes(rest[n:])
		if m < 0 {
			return nil, false
		}
		rest = rest[n+m:]
	}
	row := make(engine.Row, fields)
	for len(b) > 0 {
		_, _, n := protowire.ConsumeTag(b)
		entry, m := protowire.ConsumeBytes(b[n:])
		b = b[n+m:]
		key, rest, ok := fastField(entry, 1, protowire.BytesType)
		if !ok || !utf8.Valid(key) {
			return nil, false
		}
		vb, rest, ok := fastField(rest, 2, protowire.BytesType)
		if !ok || len(rest) > 0 {
			return nil, false
		}
		v, ok := fastValue(vb)
		if !ok {
			return nil, false
		}
		name, seen := names[string(key)]
		if !seen {
			name = string(key)
			names[name] = name
		}
		row[name] = v
	}
	return row, true
}

// fastField consumes field num of wire type typ at the start of b, returning its bytes
// (bytes fields) or its encoding (others) and what follows; ok is false when b starts with
// anything else.
func fastField(b []byte, num protowire.Number, typ protowire.Type) (v, rest []byte, ok bool) {
	gotNum, gotTyp, n := protowire.ConsumeTag(b)
	if n < 0 || gotNum != num || gotTyp != typ {
		return nil, nil, false
	}
	m := protowire.ConsumeFieldValue(num, typ, b[n:])
	if m < 0 {
		return nil, nil, false
	}
	if typ == protowire.BytesType {
		v, _ = protowire.ConsumeBytes(b[n:])
	} else {
		v = b[n : n+m]
	}
	return v, b[n+m:], true
}

// fastValue decodes a Value holding exactly one int, finite float, valid string or bool;
// ok is false for anything else.
func fastValue(b []byte) (engine.Value, bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return engine.Value{}, false
	}
	b = b[n:]
	switch {
	case num == 1 && typ == protowire.VarintType:
		x, m := protowire.ConsumeVarint(b)
		if m < 0 || m != len(b) {
			return engine.Value{}, false
		}
		return engine.Int(int64(x)), true
	case num == 2 && typ == protowire.Fixed64Type:
		x, m := protowire.ConsumeFixed64(b)
		f := math.Float64frombits(x)
		if m < 0 || m != len(b) || math.IsNaN(f) || math.IsInf(f, 0) {
			return engine.Value{}, false
		}
		return engine.Float(f), true
	case num == 3 && typ == protowire.BytesType:
		s, m := protowire.ConsumeBytes(b)
		if m < 0 || m != len(b) || !utf8.Valid(s) {
			return engine.Value{}, false
		}
		return engine.String(string(s)), true
	case num == 4 && typ == protowire.VarintType:
		x, m := protowire.ConsumeVarint(b)
		if m < 0 || m != len(b) {
			return engine.Value{}, false
		}
		return engine.Bool(x != 0), true
	}
	return engine.Value{}, false
}
