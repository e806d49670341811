//go:build wasip1

// Command config is a Go guest (ABI 1.1) whose program returns its configuration's "n" as an
// int (-1 when absent). It refuses, when configured, an "n" that is not an integer, and
// fails a call that can see a key the host consumes (memoryLimit).
package main

import (
	"errors"

	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func init() {
	osprey.OnConfig(func(cfg osprey.Config) error {
		_, err := cfg.Int("n", 0)
		return err
	})
	program.Handle(func(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
		if _, ok := ctx.Config("memoryLimit"); ok {
			return program.Result{}, errors.New("memoryLimit is visible")
		}
		n, err := ctx.ConfigInt("n", -1)
		if err != nil {
			return program.Result{}, err
		}
		return program.Result{Value: osprey.Int(n)}, nil
	})
}

func main() {}
