//go:build wasip1

// Command hostile is a Go guest that misbehaves on request, for the host's tests: the row's
// "mode" field says how.
package main

import (
	"errors"
	"os"
	"time"

	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func init() { program.Handle(run) }

var hoard [][]byte // what the memory bomb keeps alive

func run(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
	mode, err := row.String("mode")
	if err != nil {
		return program.Result{}, err
	}
	switch mode {
	case "ok":
		return program.Result{Value: osprey.Int(7)}, nil
	case "error":
		return program.Result{}, errors.New("the input makes no sense")
	case "panic":
		panic("boom")
	case "nilmap":
		var m map[string]int
		m["x"] = 1 // a runtime panic, recovered by the SDK
	case "exit":
		os.Exit(3)
	case "loop":
		for {
		}
	case "bomb":
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case "sleep":
		start := time.Now()
		time.Sleep(time.Hour) // no real sleep is granted: this spins until the deadline stops it
		return program.Result{Value: osprey.Int(int64(time.Since(start) / time.Millisecond))}, nil
	case "read":
		res, err := ctx.Get("t.other", nil)
		if err != nil {
			return program.Result{}, err
		}
		return program.Result{Value: res.Value}, nil
	case "log":
		ctx.Info("hello from the guest", "answer", 42)
		return program.Result{Value: osprey.Int(1)}, nil
	case "wrongtype":
		return program.Result{Value: osprey.String("not an int")}, nil
	case "nan":
		return program.Result{Value: osprey.Float(zero / zero)}, nil
	}
	return program.Result{}, errors.New("unknown mode " + mode)
}

var zero float64

func main() {}
