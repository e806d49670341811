//go:build wasip1

// Command noop is a Go guest whose program does no work: it returns 1 whatever the row.
// The host's benchmarks use it to measure the per-call cost of the boundary itself.
package main

import (
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func init() {
	program.Handle(func(*osprey.Context, osprey.Row) (program.Result, error) {
		return program.Result{Value: osprey.Int(1)}, nil
	})
}

func main() {}
