//go:build wasip1

// Command amount is the fraud.amount feature program: a card transaction's amount in
// currency units, for approved transactions only. Build it with examples/build.sh (or
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o examples/fraud/amount.wasm
// ./examples/fraud/amount).
package main

import (
	"errors"

	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

// init registers the program: a c-shared WebAssembly module runs init when the host
// instantiates it (_initialize), and never runs main.
func init() {
	program.Handle(amount)
}

// amount turns a transaction row into the amount to add to the card's windows.
func amount(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
	status, err := row.String("status")
	if err != nil {
		return program.Result{}, err
	}
	switch status {
	case "approved":
	case "declined":
		return program.Result{}, nil // Null: write nothing
	default:
		return program.Result{}, errors.New(`field "status": want "approved" or "declined", got ` + status)
	}
	cents, err := row.Int("amount_cents")
	if err != nil {
		return program.Result{}, err
	}
	card, err := row.String("card_id")
	if err != nil {
		return program.Result{}, err
	}
	ts := ctx.Timestamp() // the row's timestampField (ts) when it has one, else now
	if row.Has("ts") {
		if ts, err = row.Time("ts"); err != nil {
			return program.Result{}, err
		}
	}
	return program.Result{
		Value:     osprey.Float(float64(cents) / 100),
		Keys:      osprey.K("card_id", card),
		Timestamp: ts,
	}, nil
}

func main() {}
