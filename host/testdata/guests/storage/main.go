//go:build wasip1

// Command storage is a Go guest (ABI 1.2) that uses its address's storage as the row's
// "mode" field says, for the host's tests. Its feature declares the storage values count
// (int), last (timestamp) and tags ([]string).
package main

import (
	"errors"

	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func init() { program.Handle(run) }

func run(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
	mode, err := row.String("mode")
	if err != nil {
		return program.Result{}, err
	}
	count := ctx.Storage("count")
	switch mode {
	case "count": // count+1, read back: the invocation sees its own write
		n, found, err := count.Int()
		if err != nil {
			return program.Result{}, err
		}
		if !found && n != 0 {
			return program.Result{}, errors.New("an unset value is not zero")
		}
		if err := count.Set(osprey.Int(n + 1)); err != nil {
			return program.Result{}, err
		}
		m, found, err := count.Int()
		if err != nil {
			return program.Result{}, err
		}
		if !found || m != n+1 {
			return program.Result{}, errors.New("the invocation does not see its own write")
		}
		return program.Result{Value: osprey.Int(m)}, nil
	case "peek": // count, or -1 when not set, writing nothing
		n, found, err := count.Int()
		if err != nil {
			return program.Result{}, err
		}
		if !found {
			n = -1
		}
		return program.Result{Value: osprey.Int(n)}, nil
	case "fail", "panic", "loop": // writes, then fails: nothing may be committed
		if err := count.Set(osprey.Int(1000)); err != nil {
			return program.Result{}, err
		}
		switch mode {
		case "panic":
			panic("after a write")
		case "loop":
			//lint:ignore SA5002 it spins until the deadline stops it: what the test needs
			for {
			}
		}
		return program.Result{}, errors.New("failed after a write")
	case "clear": // clears, writes no value (the clear commits alone)
		return program.Result{}, count.Clear()
	case "setnull": // Set(Null) clears too
		return program.Result{Value: osprey.Int(0)}, count.Set(osprey.Null())
	case "unknown":
		_, _, err := ctx.Storage("nope").Get()
		return program.Result{}, err
	case "wrongtype":
		return program.Result{}, count.Set(osprey.String("many"))
	case "convert": // an int stored as a timestamp: Unix seconds
		last := ctx.Storage("last")
		if err := last.Set(osprey.Int(1700000000)); err != nil {
			return program.Result{}, err
		}
		t, _, err := last.Time()
		if err != nil {
			return program.Result{}, err
		}
		return program.Result{Value: osprey.Int(t.Unix())}, nil
	case "last": // 1 when last was set (and not expired), then sets it
		last := ctx.Storage("last")
		_, found, err := last.Time()
		if err != nil {
			return program.Result{}, err
		}
		if err := last.Set(osprey.Time(ctx.Timestamp())); err != nil {
			return program.Result{}, err
		}
		if found {
			return program.Result{Value: osprey.Int(1)}, nil
		}
		return program.Result{Value: osprey.Int(0)}, nil
	case "tags": // appends the row's tag to a list, returns its length
		tags := ctx.Storage("tags")
		v, _, err := tags.Get()
		if err != nil {
			return program.Result{}, err
		}
		tag, err := row.String("tag")
		if err != nil {
			return program.Result{}, err
		}
		if err := tags.Set(osprey.Strings(append(v.Strs, tag))); err != nil {
			return program.Result{}, err
		}
		return program.Result{Value: osprey.Int(int64(len(v.Strs) + 1))}, nil
	}
	return program.Result{}, errors.New("unknown mode " + mode)
}

func main() {}
