//go:build wasip1

// Command utilisation is the fraud.utilisation feature program: how much of a card's limit
// the last hour's approved transactions used, computed on request from two other features.
package main

import (
	"errors"

	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func init() {
	program.Handle(utilisation)
}

// utilisation returns fraud.amount+sum / fraud.limit for the call's card, or Null when
// either is unknown or the limit is 0.
func utilisation(ctx *osprey.Context, _ osprey.Row) (program.Result, error) {
	// Nil keys: the call's own keys ({card_id: …}), passed on without decoding them.
	spent, err := ctx.Get("fraud.amount+sum", nil)
	if err != nil {
		return program.Result{}, err
	}
	limit, err := ctx.Get("fraud.limit", nil)
	if err != nil {
		return program.Result{}, err
	}
	sum, ok1 := number(spent)
	lim, ok2 := number(limit)
	if !ok1 || !ok2 || lim == 0 {
		return program.Result{}, nil // Null: no value
	}
	if lim < 0 {
		return program.Result{}, errors.New("fraud.limit is negative")
	}
	return program.Result{Value: osprey.Float(sum / lim)}, nil
}

// number reads a found int or float.
func number(r osprey.GetResult) (float64, bool) {
	switch {
	case !r.Found:
		return 0, false
	case r.Value.Tag == osprey.TagFloat:
		return r.Value.F, true
	case r.Value.Tag == osprey.TagInt:
		return float64(r.Value.I), true
	}
	return 0, false
}

func main() {}
