//go:build !wasip1

// Package hosttest is a fake Osprey host for native tests of the SDK: it implements the
// host functions of ABI §3 over Go slices, with the result-slot convention, and records
// what the guest asked for.
package hosttest

import (
	"testing"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
)

// Host is a fake host. Set the fields before calls; read the records after.
type Host struct {
	// Get answers get_feature. Nil answers every read with Found false.
	Get func(selector string, keys []abi.KV) (abi.GetResult, error)
	// RawGet, when set, answers get_feature instead of Get with the encoded result, or an
	// error message when failed is true.
	RawGet func(selector string, keys []byte) (result []byte, failed bool)
	// Nanos is what now returns.
	Nanos int64
	// Storage is the storage of the call's address (ABI 1.2), by name: storage_get reads it
	// (Null when absent), storage_set writes it (Null deletes) and storage_clear deletes.
	// Nil is empty (a set makes it).
	Storage map[string]abi.Value
	// StorageError, when set, is asked first by every storage call — op "get", "set" or
	// "clear", the name and, for a set, the value — and a non-nil error fails the call with
	// its message (an undeclared name, a value of the wrong type, …).
	StorageError func(op, name string, v abi.Value) error
	// RawStorageGet, when set, answers storage_get instead of Storage with the encoded
	// result, or an error message when failed is true.
	RawStorageGet func(name string) (result []byte, failed bool)
	// SendError, when set, is asked by every message call (send, send_after, cancel,
	// egress) once it is recorded, and a non-nil error fails the call with its message (a
	// target that receives no messages, the hop limit, …).
	SendError func(c SendCall) error

	// Gets records the get_feature calls.
	Gets []GetCall
	// Logs records the log calls.
	Logs []Log
	// StorageCalls records the storage calls.
	StorageCalls []StorageCall
	// Sends records the message calls.
	Sends []SendCall

	tb   testing.TB
	slot core.Slot
}

// GetCall is one recorded get_feature call.
type GetCall struct {
	Selector string
	Keys     []abi.KV
	RawKeys  []byte
}

// StorageCall is one recorded storage call.
type StorageCall struct {
	// Op is "get", "set" or "clear".
	Op   string
	Name string
	// Value is what a set wrote, and Raw its encoding as the guest passed it.
	Value abi.Value
	Raw   []byte
}

// SendCall is one recorded message call (ABI 1.2).
type SendCall struct {
	// Op is "send", "send_after", "cancel" or "egress".
	Op string
	// FQN and Keys are a send's target, RawKeys the Keys encoding as the guest passed it.
	FQN     string
	Keys    []abi.KV
	RawKeys []byte
	// Value is a send's message, RawValue its encoding as the guest passed it.
	Value    abi.Value
	RawValue []byte
	// Delay (nanoseconds) and Token are send_after's; Token also cancel's.
	Delay int64
	Token string
	// Egress names an egress call's egress; Row is its row, RawRow its encoding.
	Egress string
	Row    []abi.Field
	RawRow []byte
}

// Log is one recorded log call.
type Log struct {
	Level int32
	Msg   string
	Attrs []abi.Field
}

// Install makes h the SDK's host until the test ends, and returns h.
func Install(tb testing.TB, h *Host) *Host {
	h.tb = tb
	tb.Cleanup(core.SetHost(h))
	return h
}

// GetFeature implements core.Host.
func (h *Host) GetFeature(sel string, keys, out []byte) int32 {
	var d abi.Decoder
	d.Reset(keys)
	kvs := d.Keys()
	if err := d.Done(); err != nil {
		// The real host traps: the guest broke the protocol.
		h.tb.Errorf("get_feature(%q): malformed keys %x: %v", sel, keys, err)
	}
	h.Gets = append(h.Gets, GetCall{Selector: sel, Keys: kvs, RawKeys: append([]byte(nil), keys...)})
	if h.RawGet != nil {
		res, failed := h.RawGet(sel, keys)
		return h.slot.Return(out, res, failed)
	}
	r := abi.GetResult{}
	if h.Get != nil {
		var err error
		if r, err = h.Get(sel, kvs); err != nil {
			return h.slot.Return(out, []byte(err.Error()), true)
		}
	}
	return h.slot.Return(out, abi.AppendGetResult(nil, &r), false)
}

// Result implements core.Host.
func (h *Host) Result(out []byte) int32 { return h.slot.Fetch(out) }

// Log implements core.Host.
func (h *Host) Log(level int32, msg string, attrs []byte) {
	l := Log{Level: level, Msg: msg}
	if len(attrs) > 0 {
		var d abi.Decoder
		d.Reset(attrs)
		l.Attrs = d.Row()
		if err := d.Done(); err != nil {
			h.tb.Errorf("log(%q): malformed attributes %x: %v", msg, attrs, err)
		}
	}
	h.Logs = append(h.Logs, l)
}

// Now implements core.Host.
func (h *Host) Now() int64 { return h.Nanos }

// StorageGet implements core.Host.
func (h *Host) StorageGet(name string, out []byte) int32 {
	h.StorageCalls = append(h.StorageCalls, StorageCall{Op: "get", Name: name})
	if h.RawStorageGet != nil {
		res, failed := h.RawStorageGet(name)
		return h.slot.Return(out, res, failed)
	}
	if h.StorageError != nil {
		if err := h.StorageError("get", name, abi.Null()); err != nil {
			return h.slot.Return(out, []byte(err.Error()), true)
		}
	}
	return h.slot.Return(out, abi.AppendValue(nil, h.Storage[name]), false)
}

// StorageSet implements core.Host.
func (h *Host) StorageSet(name string, val []byte) int32 {
	v, err := abi.DecodeStorageValue(val)
	if err != nil {
		// The real host traps: the guest broke the protocol.
		h.tb.Errorf("storage_set(%q): malformed value %x: %v", name, val, err)
		return h.slot.Return(nil, []byte(err.Error()), true)
	}
	h.StorageCalls = append(h.StorageCalls, StorageCall{Op: "set", Name: name, Value: v, Raw: append([]byte(nil), val...)})
	if h.StorageError != nil {
		if err := h.StorageError("set", name, v); err != nil {
			return h.slot.Return(nil, []byte(err.Error()), true)
		}
	}
	if v.Tag == abi.TagNull {
		delete(h.Storage, name)
	} else {
		if h.Storage == nil {
			h.Storage = map[string]abi.Value{}
		}
		h.Storage[name] = v
	}
	return h.slot.Return(nil, nil, false)
}

// StorageClear implements core.Host.
func (h *Host) StorageClear(name string) int32 {
	h.StorageCalls = append(h.StorageCalls, StorageCall{Op: "clear", Name: name})
	if h.StorageError != nil {
		if err := h.StorageError("clear", name, abi.Null()); err != nil {
			return h.slot.Return(nil, []byte(err.Error()), true)
		}
	}
	delete(h.Storage, name)
	return h.slot.Return(nil, nil, false)
}

// record records c and answers it: SendError's error, or success.
func (h *Host) record(c SendCall) int32 {
	h.Sends = append(h.Sends, c)
	if h.SendError != nil {
		if err := h.SendError(c); err != nil {
			return h.slot.Return(nil, []byte(err.Error()), true)
		}
	}
	return h.slot.Return(nil, nil, false)
}

// sendCall decodes a send's keys and message as the real host does, reporting what breaks
// the protocol (the real host traps).
func (h *Host) sendCall(op, fqn string, keys, msg []byte) SendCall {
	c := SendCall{Op: op, FQN: fqn, RawKeys: append([]byte(nil), keys...), RawValue: append([]byte(nil), msg...)}
	d := abi.NewDecoder(keys)
	c.Keys = d.Keys()
	if err := d.Done(); err != nil {
		h.tb.Errorf("%s(%q): malformed keys %x: %v", op, fqn, keys, err)
	}
	var err error
	if c.Value, err = abi.DecodeMessageValue(msg); err != nil {
		h.tb.Errorf("%s(%q): malformed message %x: %v", op, fqn, msg, err)
	}
	return c
}

// Send implements core.Host.
func (h *Host) Send(fqn string, keys, msg []byte) int32 {
	return h.record(h.sendCall("send", fqn, keys, msg))
}

// SendAfter implements core.Host. A negative delay breaks the protocol.
func (h *Host) SendAfter(delay int64, token, fqn string, keys, msg []byte) int32 {
	c := h.sendCall("send_after", fqn, keys, msg)
	c.Delay, c.Token = delay, token
	if delay < 0 {
		h.tb.Errorf("send_after(%q): negative delay %d", token, delay)
	}
	return h.record(c)
}

// Cancel implements core.Host.
func (h *Host) Cancel(token string) int32 { return h.record(SendCall{Op: "cancel", Token: token}) }

// Egress implements core.Host.
func (h *Host) Egress(name string, row []byte) int32 {
	c := SendCall{Op: "egress", Egress: name, RawRow: append([]byte(nil), row...)}
	var err error
	if c.Row, err = abi.DecodeEgressRow(row); err != nil {
		h.tb.Errorf("egress(%q): malformed row %x: %v", name, row, err)
	}
	return h.record(c)
}
