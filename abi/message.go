package abi

// KV is one entity key: name and value.
type KV struct{ Name, Value string }

// Field is one row field: name and value.
type Field struct {
	Name  string
	Value Value
}

// ProgramCall is the input of osprey_program (ABI.md §4.1).
type ProgramCall struct {
	FQN       string
	Keys      []KV
	Timestamp int64
	Row       []Field
}

// ProgramResult is the body of a successful program response.
type ProgramResult struct {
	Value        Value
	HasKeys      bool
	Keys         []KV
	HasTimestamp bool
	Timestamp    int64
}

// MiddlewareCall is the input of osprey_middleware (ABI.md §4.2).
type MiddlewareCall struct {
	Stage, Op uint8
	FQN       string
	Keys      []KV
	Timestamp int64
	Value     Value
}

// GetResult is what get_feature returns (ABI.md §5.6).
type GetResult struct {
	Found     bool
	Value     Value
	Timestamp int64
	Fresh     bool
}

// AppendKeys appends a Keys encoding.
func AppendKeys(b []byte, keys []KV) []byte {
	b = AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = AppendString(b, k.Name)
		b = AppendString(b, k.Value)
	}
	return b
}

// Keys decodes a Keys encoding, rejecting duplicate names.
func (d *Decoder) Keys() []KV {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	keys := make([]KV, 0, min(n, prealloc))
	var seen map[string]struct{}
	for ; n > 0 && d.err == nil; n-- {
		k := KV{Name: d.String(), Value: d.String()}
		if d.err != nil {
			break
		}
		var dup bool
		if seen, dup = seenBefore(seen, k.Name, len(keys), func(i int) string { return keys[i].Name }); dup {
			d.fail(errorf("duplicate key %q", k.Name))
			break
		}
		keys = append(keys, k)
	}
	if d.err != nil {
		return nil
	}
	return keys
}

// prealloc bounds the elements a decoder allocates ahead of decoding them: a count is
// checked against the bytes left, but an element can take more memory than wire bytes.
const prealloc = 64

// dupPairs is the count up to which duplicate names are found by comparing pairs; above it a
// map keeps the check linear.
const dupPairs = 16

// seenBefore reports whether name equals one of the n names before it (nameAt(i) returns the
// i-th). It returns the map to pass for the next name, built once n reaches dupPairs.
func seenBefore(seen map[string]struct{}, name string, n int, nameAt func(int) string) (map[string]struct{}, bool) {
	if seen == nil && n >= dupPairs {
		seen = make(map[string]struct{}, 2*n)
		for i := range n {
			seen[nameAt(i)] = struct{}{}
		}
	}
	if seen == nil {
		for i := range n {
			if nameAt(i) == name {
				return nil, true
			}
		}
		return nil, false
	}
	if _, ok := seen[name]; ok {
		return seen, true
	}
	seen[name] = struct{}{}
	return seen, false
}

// AppendRow appends a Row encoding.
func AppendRow(b []byte, row []Field) []byte {
	b = AppendUvarint(b, uint64(len(row)))
	for _, f := range row {
		b = AppendString(b, f.Name)
		b = AppendValue(b, f.Value)
	}
	return b
}

// Row decodes a Row encoding, rejecting duplicate field names.
func (d *Decoder) Row() []Field { return d.row(false) }

// row decodes a Row; with storable (an egress row), a field whose value is not a storage
// value (a window) is an error too.
func (d *Decoder) row(storable bool) []Field {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	row := make([]Field, 0, min(n, prealloc))
	var seen map[string]struct{}
	for ; n > 0 && d.err == nil; n-- {
		f := Field{Name: d.String()}
		if storable {
			f.Value = d.primitive("cannot be sent (an egress row holds null or primitive kinds)")
		} else {
			f.Value = d.Value()
		}
		if d.err != nil {
			break
		}
		var dup bool
		if seen, dup = seenBefore(seen, f.Name, len(row), func(i int) string { return row[i].Name }); dup {
			d.fail(errorf("duplicate field %q", f.Name))
			break
		}
		row = append(row, f)
	}
	if d.err != nil {
		return nil
	}
	return row
}

// AppendProgramCall appends a program call.
func AppendProgramCall(b []byte, c *ProgramCall) []byte {
	b = append(b, CallProgram)
	b = AppendString(b, c.FQN)
	b = AppendKeys(b, c.Keys)
	b = AppendI64(b, c.Timestamp)
	return AppendRow(b, c.Row)
}

// DecodeProgramCall decodes a whole program call.
func DecodeProgramCall(b []byte) (ProgramCall, error) {
	d := NewDecoder(b)
	var c ProgramCall
	if k := d.U8(); k != CallProgram && d.err == nil {
		d.fail(errorf("call kind %d, want %d (program)", k, CallProgram))
	}
	c.FQN = d.String()
	c.Keys = d.Keys()
	c.Timestamp = d.I64()
	c.Row = d.Row()
	return c, d.Done()
}

// AppendMiddlewareCall appends a middleware call.
func AppendMiddlewareCall(b []byte, c *MiddlewareCall) []byte {
	b = append(b, CallMiddleware, c.Stage, c.Op)
	b = AppendString(b, c.FQN)
	b = AppendKeys(b, c.Keys)
	b = AppendI64(b, c.Timestamp)
	return AppendValue(b, c.Value)
}

// DecodeMiddlewareCall decodes a whole middleware call.
func DecodeMiddlewareCall(b []byte) (MiddlewareCall, error) {
	d := NewDecoder(b)
	var c MiddlewareCall
	if k := d.U8(); k != CallMiddleware && d.err == nil {
		d.fail(errorf("call kind %d, want %d (middleware)", k, CallMiddleware))
	}
	c.Stage, c.Op = d.U8(), d.U8()
	if d.err == nil && (c.Stage < StagePreGet || c.Stage > StagePostSet) {
		d.fail(errorf("unknown stage %d", c.Stage))
	}
	if d.err == nil && (c.Op < OpGet || c.Op > OpUpdate) {
		d.fail(errorf("unknown op %d", c.Op))
	}
	c.FQN = d.String()
	c.Keys = d.Keys()
	c.Timestamp = d.I64()
	c.Value = d.Value()
	return c, d.Done()
}

// AppendProgramResult appends an OK response carrying r.
func AppendProgramResult(b []byte, r *ProgramResult) []byte {
	b = append(b, StatusOK)
	b = AppendValue(b, r.Value)
	var flags uint8
	if r.HasKeys {
		flags |= FlagKeys
	}
	if r.HasTimestamp {
		flags |= FlagTimestamp
	}
	b = append(b, flags)
	if r.HasKeys {
		b = AppendKeys(b, r.Keys)
	}
	if r.HasTimestamp {
		b = AppendI64(b, r.Timestamp)
	}
	return b
}

// AppendValueResult appends an OK response carrying one Value (a middleware's result).
func AppendValueResult(b []byte, v Value) []byte {
	return AppendValue(append(b, StatusOK), v)
}

// AppendErrorResponse appends a failed response: status is StatusError or StatusRejected.
func AppendErrorResponse(b []byte, status uint8, msg string) []byte {
	return AppendString(append(b, status), msg)
}

// Response is a decoded response header: Status, and Message when it is not StatusOK.
// For StatusOK the body is left in the Decoder returned by DecodeResponse.
type Response struct {
	Status  uint8
	Message string
}

// DecodeResponse reads a response's status; for an error or rejection it reads the message
// too. For StatusOK the returned Decoder is positioned at the body.
func DecodeResponse(b []byte) (Response, *Decoder) {
	d := NewDecoder(b)
	return d.Response(), d
}

// Response reads a response header (see DecodeResponse) from d, which the caller may keep
// on its stack to decode without allocating.
func (d *Decoder) Response() Response {
	r := Response{Status: d.U8()}
	switch r.Status {
	case StatusOK:
	case StatusError, StatusRejected:
		r.Message = d.String()
		_ = d.Done()
	default:
		if d.err == nil {
			d.fail(errorf("unknown response status %d", r.Status))
		}
	}
	return r
}

// ProgramResult decodes a program response body.
func (d *Decoder) ProgramResult() ProgramResult {
	var r ProgramResult
	r.Value = d.Value()
	flags := d.U8()
	if d.err == nil && flags&^(FlagKeys|FlagTimestamp) != 0 {
		d.fail(errorf("unknown program result flags %#x", flags))
	}
	if flags&FlagKeys != 0 {
		r.HasKeys = true
		r.Keys = d.Keys()
	}
	if flags&FlagTimestamp != 0 {
		r.HasTimestamp = true
		r.Timestamp = d.I64()
	}
	return r
}

// AppendGetResult appends a GetResult.
func AppendGetResult(b []byte, r *GetResult) []byte {
	if r.Found {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = AppendValue(b, r.Value)
	b = AppendI64(b, r.Timestamp)
	if r.Fresh {
		return append(b, 1)
	}
	return append(b, 0)
}

// GetResult decodes a GetResult.
func (d *Decoder) GetResult() GetResult {
	var r GetResult
	r.Found = d.bool() == 1
	r.Value = d.Value()
	r.Timestamp = d.I64()
	r.Fresh = d.bool() == 1
	return r
}
