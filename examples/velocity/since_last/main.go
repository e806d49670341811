//go:build wasip1

// Command since_last is the velocity.since_last feature program: the seconds since the
// card's previous transaction. It keeps the time of the card's last transaction in its
// storage, last_seen (spec.builder.storage; ABI 1.2), and writes the difference as the
// feature's value.
package main

import (
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func init() {
	program.Handle(sinceLast)
}

// sinceLast runs on each row of velocity.transactions. Its storage is the card's (the
// row's card_id): last_seen is this card's previous transaction time, unless it is older
// than its expireAfterWrite (720h), when it is forgotten.
func sinceLast(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
	now := ctx.Timestamp() // the row's ts (the data source's timestampField)
	lastSeen := ctx.Storage("last_seen")
	prev, found, err := lastSeen.Time()
	if err != nil {
		return program.Result{}, err
	}
	if found && now.Before(prev) {
		// A transaction older than the last one seen (rows out of order): it neither moves
		// last_seen back nor yields an interval.
		return program.Result{}, nil
	}
	// Written with the value, after the program returns: if this program failed, neither
	// would be.
	if err := lastSeen.Set(osprey.Time(now)); err != nil {
		return program.Result{}, err
	}
	if !found {
		return program.Result{}, nil // the card's first transaction: no interval yet
	}
	return program.Result{Value: osprey.Float(now.Sub(prev).Seconds())}, nil
}

func main() {}
