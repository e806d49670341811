//go:build wasip1

// Command clip is the clip_amount middleware: before an amount is written it rejects a
// negative one and clips one above Max.
package main

import (
	"errors"

	"github.com/osprey-ml/osprey/guest-sdk/go/middleware"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
)

// Max is the largest amount written; larger ones are clipped to it.
const Max = 10000

func init() {
	middleware.Handle(clip)
}

func clip(ctx *osprey.Context, call middleware.Call, v osprey.Value) (osprey.Value, error) {
	var amount float64
	switch v.Tag {
	case osprey.TagNull:
		return v, nil
	case osprey.TagFloat:
		amount = v.F
	case osprey.TagInt:
		amount = float64(v.I)
	default:
		return v, errors.New("clip_amount: want a number, got " + v.Tag.String())
	}
	if amount < 0 {
		return v, osprey.Reject("clip_amount: amount %v is negative", amount)
	}
	if amount > Max {
		ctx.Info("clipped", "amount", amount, "max", Max, "op", call.Op)
		amount = Max
	}
	return osprey.Float(amount), nil
}

func main() {}
