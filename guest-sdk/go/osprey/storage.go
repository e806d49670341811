package osprey

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/guest-sdk/go/internal/core"
)

// Storage is one value of a program's address-scoped storage (ABI 1.2, abi/ABI.md §4.5):
// the storage of the invocation's address — the feature and the entity the program runs
// for — under a name its manifest declares in spec.builder.storage, with a type and an
// expiry:
//
//	builder:
//	  module: since_last.wasm
//	  storage:
//	    - {name: last_seen, type: timestamp, expireAfterWrite: 720h}
//
// Reads see the invocation's own writes. The host commits the writes together with the
// program's value once the program returned; a program that fails (an error, a panic, a
// timeout) leaves no trace. Like Flink Stateful Functions' address-scoped storage, it is
// per entity: a program computing a card's feature sees that card's values only.
//
//	last := ctx.Storage("last_seen")
//	prev, ok, err := last.Time()
//	if err != nil {
//		return program.Result{}, err
//	}
//	if err := last.Set(osprey.Time(ctx.Timestamp())); err != nil {
//		return program.Result{}, err
//	}
//
// Get one with Context.Storage; it is valid during the call. Only programs have storage:
// a module that uses it is refused as a middleware, and needs an ABI 1.2 host.
type Storage struct {
	c    *Context
	name string
}

// Storage returns the handle of the storage value name of the call's address. It does not
// call the host: Get, Set and Clear do, and report an undeclared name.
func (c *Context) Storage(name string) Storage { return Storage{c: c, name: name} }

// Name returns the storage value's name.
func (s Storage) Name() string { return s.name }

func (s Storage) fail(msg string) error {
	return errors.New("storage " + strconv.Quote(s.name) + ": " + msg)
}

// check returns the call, or an error when the handle cannot reach the host.
func (s Storage) check() (*core.Call, error) {
	if s.c == nil {
		return nil, s.fail("no Context (get a Storage with Context.Storage)")
	}
	cc := s.c.call()
	if !cc.Active() {
		return nil, ErrCallEnded
	}
	if cc.Stage() != 0 {
		return nil, s.fail("storage is a program's: a middleware has none")
	}
	return cc, nil
}

// raw returns the value's encoding as storage_get returns it (valid until the next host
// call), or an error.
func (s Storage) raw() ([]byte, error) {
	cc, err := s.check()
	if err != nil {
		return nil, err
	}
	out := resultSlot(cc)
	b, failed, problem := fetch(cc, core.StorageGet(s.name, out), out)
	switch {
	case problem != "":
		return nil, s.fail(problem)
	case failed:
		return nil, s.fail(string(b))
	case len(b) == 0:
		return nil, s.fail("the host returned an empty value")
	}
	return b, nil
}

// Get returns the value, converted to the type the manifest declares. found is false, and
// the value Null, when it is not set: never written, cleared, or expired. Strings and lists
// allocate.
func (s Storage) Get() (v Value, found bool, err error) {
	b, err := s.raw()
	if err != nil {
		return Value{}, false, err
	}
	v, err = abi.DecodeStorageValue(b)
	if err != nil {
		return Value{}, false, s.fail(err.Error())
	}
	return v, v.Tag != abi.TagNull, nil
}

// scalar returns the 8-byte payload of a value of tag want, without decoding it into a
// Value; found is false when the value is not set.
func (s Storage) scalar(want abi.Tag) (bits uint64, found bool, err error) {
	b, err := s.raw()
	if err != nil {
		return 0, false, err
	}
	if len(b) == 9 && abi.Tag(b[0]) == want {
		return binary.LittleEndian.Uint64(b[1:]), true, nil
	}
	found, err = s.wrong(want, b)
	return 0, found, err
}

// wrong returns found false for Null (and a nil error), or the error of a value that is
// not of kind want.
func (s Storage) wrong(want abi.Tag, b []byte) (bool, error) {
	v, err := abi.DecodeStorageValue(b)
	switch {
	case err != nil:
		return false, s.fail(err.Error())
	case v.Tag == abi.TagNull:
		return false, nil
	}
	return false, s.fail("want " + want.String() + ", got " + v.Tag.String())
}

// Int returns an int value; found is false when it is not set.
func (s Storage) Int() (v int64, found bool, err error) {
	bits, found, err := s.scalar(abi.TagInt)
	return int64(bits), found, err
}

// Float returns a float value; found is false when it is not set.
func (s Storage) Float() (v float64, found bool, err error) {
	bits, found, err := s.scalar(abi.TagFloat)
	return math.Float64frombits(bits), found, err
}

// Time returns a timestamp value, in UTC; found is false when it is not set.
func (s Storage) Time() (v time.Time, found bool, err error) {
	bits, found, err := s.scalar(abi.TagTimestamp)
	if !found {
		return time.Time{}, false, err
	}
	return unixTime(int64(bits)), true, err
}

// Bool returns a bool value; found is false when it is not set.
func (s Storage) Bool() (v, found bool, err error) {
	b, err := s.raw()
	if err != nil {
		return false, false, err
	}
	if len(b) == 2 && abi.Tag(b[0]) == abi.TagBool && b[1] <= 1 {
		return b[1] == 1, true, nil
	}
	found, err = s.wrong(abi.TagBool, b)
	return false, found, err
}

// String returns a string value; found is false when it is not set.
func (s Storage) String() (v string, found bool, err error) {
	val, found, err := s.Get()
	if err != nil || !found {
		return "", false, err
	}
	if val.Tag != abi.TagString {
		return "", false, s.fail("want string, got " + val.Tag.String())
	}
	return val.S, true, nil
}

// Set sets the value to v, which the host converts to the declared type (an int for a
// float, Unix seconds for a timestamp, …, as a feature's value is converted); a value that
// does not convert is an error. Setting Null clears it. The write is the invocation's until
// the program returns: later reads see it, and it is committed with the program's value.
func (s Storage) Set(v Value) error {
	cc, err := s.check()
	if err != nil {
		return err
	}
	if v.Tag == abi.TagWindow {
		return s.fail("a window cannot be stored (storage holds the primitive kinds)")
	}
	enc, msg := core.AppendValue(cc.Scratch().Val[:0], &v)
	if msg != "" {
		return s.fail(msg)
	}
	cc.Scratch().Val = enc
	if len(enc) > abi.MaxMessageSize {
		return s.fail("the value is " + strconv.Itoa(len(enc)) + " bytes encoded, more than the ABI's limit of " + strconv.Itoa(abi.MaxMessageSize))
	}
	return s.status(core.StorageSet(s.name, enc))
}

// Clear clears the value: later reads find it not set, and the clear is committed with
// the program's value.
func (s Storage) Clear() error {
	if _, err := s.check(); err != nil {
		return err
	}
	return s.status(core.StorageClear(s.name))
}

// status reads the result of storage_set or storage_clear: 0, or minus the length of a
// held error message.
func (s Storage) status(n int32) error {
	if m := status(s.c.call(), n); m != "" {
		return s.fail(m)
	}
	return nil
}
