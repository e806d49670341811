//go:build wasip1

// Command session_txns is the velocity.session_txns feature program: the number of the
// card's transactions in its current session, a session ending after 30 minutes without a
// transaction (in event time: the rows' ts). It keeps the session's count and its last
// transaction's time in its storage (spec.builder.storage; ABI 1.2).
package main

import (
	"time"

	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

// gap is the silence that ends a session.
const gap = 30 * time.Minute

func init() {
	program.Handle(sessionTxns)
}

// sessionTxns runs on each row of velocity.transactions, with the card's storage.
func sessionTxns(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
	now := ctx.Timestamp()
	last, count := ctx.Storage("session_last"), ctx.Storage("session_count")
	prev, found, err := last.Time()
	if err != nil {
		return program.Result{}, err
	}
	n, _, err := count.Int()
	if err != nil {
		return program.Result{}, err
	}
	switch {
	case !found || now.Sub(prev) > gap:
		n = 1 // the card's first transaction, or the first after a silence: a new session
	default:
		n++ // within the session (a row out of order counts, and leaves session_last)
	}
	if !found || now.After(prev) {
		if err := last.Set(osprey.Time(now)); err != nil {
			return program.Result{}, err
		}
	}
	if err := count.Set(osprey.Int(n)); err != nil {
		return program.Result{}, err
	}
	return program.Result{Value: osprey.Int(n)}, nil
}

func main() {}
