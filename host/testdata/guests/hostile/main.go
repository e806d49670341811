//go:build wasip1

// Command hostile is a Go guest that misbehaves on request, for the host's tests: the row's
// "mode" field says how.
package main

import (
	"errors"
	"os"
	"runtime"
	"strings"
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
	case "logflood": // floods osprey.log with forged attribute names and a terminal escape
		for i := range floodLines {
			ctx.Error("flood\n\x1b[2Jlevel=ERROR", "i", i, "level", "ERROR", "msg", "forged", "component", "host", "fqn", "t.other")
		}
		return program.Result{Value: osprey.Int(floodLines)}, nil
	case "stderrflood": // floods stderr with long lines, then dies of an unrecovered panic
		line := strings.Repeat("noise ", 1000) + "\n"
		for range floodLines / 5 {
			os.Stderr.WriteString(line)
		}
		go func() { panic("drowned in noise") }()
		for {
			runtime.Gosched()
		}
	case "wrongtype":
		return program.Result{Value: osprey.String("not an int")}, nil
	case "nan":
		return program.Result{Value: osprey.Float(zero / zero)}, nil
	}
	return program.Result{}, errors.New("unknown mode " + mode)
}

var zero float64

const floodLines = 100000

func main() {}
