//go:build !wasip1

package osprey

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/hosttest"
)

// declared is a fake feature's spec.builder.storage: the tags its values have (the real
// host converts to them; the fake one only checks).
var declared = map[string]abi.Tag{"last_seen": abi.TagTimestamp, "count": abi.TagInt, "avg": abi.TagFloat,
	"page": abi.TagString, "seen": abi.TagBool, "pages": abi.TagStringList}

func storageHost(t *testing.T) *hosttest.Host {
	return hosttest.Install(t, &hosttest.Host{StorageError: func(op, name string, v abi.Value) error {
		tag, ok := declared[name]
		switch {
		case !ok:
			return errors.New("invalid storage use: test.feature declares no storage \"" + name + "\"")
		case op == "set" && v.Tag != abi.TagNull && v.Tag != tag:
			return errors.New("invalid storage use: storage \"" + name + "\" of test.feature is " + tag.String() + ": cannot convert " + v.Tag.String())
		}
		return nil
	}})
}

func TestStorageRoundTrip(t *testing.T) {
	h := storageHost(t)
	ctx, _, end := decode(t, []abi.KV{{Name: "card_id", Value: "c1"}}, nil)
	defer end()
	last := ctx.Storage("last_seen")
	if last.Name() != "last_seen" {
		t.Errorf("Name = %q", last.Name())
	}
	// Not set: found false, no error, for Get and the typed readers.
	if v, ok, err := last.Get(); err != nil || ok || v.Tag != abi.TagNull {
		t.Fatalf("Get of an unset value = %+v, %v, %v", v, ok, err)
	}
	if tm, ok, err := last.Time(); err != nil || ok || !tm.IsZero() {
		t.Fatalf("Time of an unset value = %v, %v, %v", tm, ok, err)
	}
	if err := last.Set(Time(ts)); err != nil {
		t.Fatal(err)
	}
	if tm, ok, err := last.Time(); err != nil || !ok || !tm.Equal(ts) || tm.Location() != time.UTC {
		t.Fatalf("Time after Set = %v, %v, %v", tm, ok, err)
	}
	if v, ok, err := last.Get(); err != nil || !ok || v.Tag != abi.TagTimestamp || v.I != ts.UnixNano() {
		t.Fatalf("Get after Set = %+v, %v, %v", v, ok, err)
	}
	// What went to the host: the name and the Value encoding.
	set := h.StorageCalls[2]
	if set.Op != "set" || set.Name != "last_seen" || string(set.Raw) != string(abi.AppendValue(nil, abi.Timestamp(ts.UnixNano()))) {
		t.Errorf("set sent %+v", set)
	}
	if err := last.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := last.Get(); err != nil || ok {
		t.Fatalf("Get after Clear = %v, %v", ok, err)
	}

	// Every typed reader, and Set(Null) clearing.
	for _, tt := range []struct {
		name string
		v    Value
		read func(Storage) (any, bool, error)
		want any
	}{
		{"count", Int(-3), func(s Storage) (any, bool, error) { return wrap(s.Int()) }, int64(-3)},
		{"avg", Float(2.5), func(s Storage) (any, bool, error) { return wrap(s.Float()) }, 2.5},
		{"page", String("/cart"), func(s Storage) (any, bool, error) { return wrap(s.String()) }, "/cart"},
		{"seen", Bool(true), func(s Storage) (any, bool, error) { return wrap(s.Bool()) }, true},
		{"seen", Bool(false), func(s Storage) (any, bool, error) { return wrap(s.Bool()) }, false},
	} {
		s := ctx.Storage(tt.name)
		if err := s.Set(tt.v); err != nil {
			t.Fatalf("Set %s: %v", tt.name, err)
		}
		if got, ok, err := tt.read(s); err != nil || !ok || got != tt.want {
			t.Errorf("%s = %v, %v, %v; want %v", tt.name, got, ok, err, tt.want)
		}
		if err := s.Set(Null()); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := tt.read(s); err != nil || ok {
			t.Errorf("%s after Set(Null) = %v, %v", tt.name, ok, err)
		}
	}
	// A list larger than the first result buffer comes through result.
	pages := strings.Split(strings.Repeat("/page,", 200), ",")
	if err := ctx.Storage("pages").Set(Strings(pages)); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := ctx.Storage("pages").Get(); err != nil || !ok || len(v.Strs) != len(pages) || v.Strs[0] != "/page" {
		t.Errorf("big Get = %d strings, %v, %v", len(v.Strs), ok, err)
	}
}

func wrap[T any](v T, ok bool, err error) (any, bool, error) { return v, ok, err }

func TestStorageErrors(t *testing.T) {
	h := storageHost(t)
	ctx, _, end := decode(t, nil, nil)
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"undeclared get", func() error { _, _, err := ctx.Storage("nope").Get(); return err },
			`storage "nope": invalid storage use: test.feature declares no storage "nope"`},
		{"undeclared set", func() error { return ctx.Storage("nope").Set(Int(1)) },
			`storage "nope": invalid storage use: test.feature declares no storage "nope"`},
		{"undeclared clear", func() error { return ctx.Storage("nope").Clear() },
			`storage "nope": invalid storage use: test.feature declares no storage "nope"`},
		{"wrong type", func() error { return ctx.Storage("count").Set(String("x")) },
			`storage "count": invalid storage use: storage "count" of test.feature is int: cannot convert string`},
		{"window", func() error { return ctx.Storage("count").Set(Value{Tag: abi.TagWindow}) },
			`storage "count": a window cannot be stored (storage holds the primitive kinds)`},
		{"NaN", func() error { return ctx.Storage("avg").Set(Float(math.NaN())) }, `storage "avg": `},
		{"bad UTF-8", func() error { return ctx.Storage("page").Set(String("\xff")) }, `storage "page": `},
	}
	for _, tt := range tests {
		if err := tt.do(); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	for _, c := range h.StorageCalls {
		if c.Op == "set" && c.Name != "nope" && c.Name != "count" {
			t.Errorf("a value the SDK refuses reached the host: %+v", c)
		}
	}
	// A typed reader of another kind says what it found.
	h.Storage = map[string]abi.Value{"count": abi.Int(1)}
	if _, _, err := ctx.Storage("count").Time(); err == nil || err.Error() != `storage "count": want timestamp, got int` {
		t.Errorf("Time of an int: %v", err)
	}
	if _, _, err := ctx.Storage("count").String(); err == nil || err.Error() != `storage "count": want string, got int` {
		t.Errorf("String of an int: %v", err)
	}
	end()
	if _, _, err := ctx.Storage("count").Get(); !errors.Is(err, ErrCallEnded) {
		t.Errorf("Get after the call: %v", err)
	}
	if err := ctx.Storage("count").Set(Int(2)); !errors.Is(err, ErrCallEnded) {
		t.Errorf("Set after the call: %v", err)
	}
	if _, _, err := (Storage{}).Get(); err == nil {
		t.Error("the zero Storage reached the host")
	}
}

func TestStorageMalformedResult(t *testing.T) {
	for _, tt := range []struct {
		raw  []byte
		want string
	}{
		{[]byte{2, 0}, "abi: malformed message: truncated"},
		{abi.AppendValue(nil, abi.Value{Tag: abi.TagWindow}), "cannot be stored"},
		{nil, "the host returned an empty value"},
	} {
		hosttest.Install(t, &hosttest.Host{RawStorageGet: func(string) ([]byte, bool) { return tt.raw, false }})
		ctx, _, end := decode(t, nil, nil)
		if _, _, err := ctx.Storage("x").Get(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%x: %v, want %q", tt.raw, err, tt.want)
		}
		if _, _, err := ctx.Storage("x").Int(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Int of %x: %v, want %q", tt.raw, err, tt.want)
		}
		end()
	}
}

func TestStorageInMiddleware(t *testing.T) {
	h := storageHost(t)
	c := new(core.Call)
	in := abi.AppendMiddlewareCall(nil, &abi.MiddlewareCall{Stage: abi.StagePreSet, Op: abi.OpSet, FQN: "t.f", Value: abi.Int(1)})
	if _, err := c.DecodeMiddleware(in); err != nil {
		t.Fatal(err)
	}
	defer c.End()
	if _, _, err := (*Context)(c).Storage("count").Get(); err == nil || !strings.Contains(err.Error(), "storage is a program's") {
		t.Errorf("Get in a middleware: %v", err)
	}
	if len(h.StorageCalls) != 0 {
		t.Errorf("a middleware reached the host's storage: %+v", h.StorageCalls)
	}
}

func TestStorageNoHost(t *testing.T) {
	ctx, _, end := decode(t, nil, nil)
	defer end()
	if _, _, err := ctx.Storage("x").Get(); err == nil || !strings.Contains(err.Error(), "no Osprey host") {
		t.Errorf("Get without a host: %v", err)
	}
	if err := ctx.Storage("x").Set(Int(1)); err == nil || !strings.Contains(err.Error(), "no Osprey host") {
		t.Errorf("Set without a host: %v", err)
	}
}

// A storage read of a scalar allocates nothing.
func TestStorageAllocs(t *testing.T) {
	enc := abi.AppendValue(nil, abi.Int(7))
	hosttest.Install(t, &hosttest.Host{RawStorageGet: func(string) ([]byte, bool) { return enc, false }})
	ctx, _, end := decode(t, nil, nil)
	defer end()
	s := ctx.Storage("count")
	s.Int() // the result buffer
	if n := testing.AllocsPerRun(100, func() {
		if v, ok, err := s.Int(); err != nil || !ok || v != 7 {
			t.Fatal(v, ok, err)
		}
	}); n >= 1 { // the fake host's record of the calls grows by doubling: less than 1 a run
		t.Errorf("Storage.Int allocates %v times", n)
	}
}
