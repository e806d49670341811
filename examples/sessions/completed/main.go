//go:build wasip1

// Command completed is the program of two features that receive the length of each session
// that ended (messages: float, from sessions.clicks): sessions.completed, the number of the
// user's completed sessions, and sessions.avg_seconds, their average length. Both keep the
// count and the total in their own storage.
package main

import (
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func init() {
	program.HandleMessage(sessionEnded)
}

func sessionEnded(ctx *osprey.Context, msg osprey.Message) (program.Result, error) {
	count, total := ctx.Storage("count"), ctx.Storage("total_seconds")
	n, _, err := count.Int()
	if err != nil {
		return program.Result{}, err
	}
	sum, _, err := total.Float()
	if err != nil {
		return program.Result{}, err
	}
	n, sum = n+1, sum+msg.Value.F
	if err := count.Set(osprey.Int(n)); err != nil {
		return program.Result{}, err
	}
	if err := total.Set(osprey.Float(sum)); err != nil {
		return program.Result{}, err
	}
	if ctx.FQN() == "sessions.avg_seconds" {
		return program.Result{Value: osprey.Float(sum / float64(n))}, nil
	}
	return program.Result{Value: osprey.Int(n)}, nil
}

func main() {}
