//go:build wasip1

// Command clip is the clip_amount middleware: before an amount is written it rejects a
// negative one and clips one above the maximum its manifest's config gives (max; 10000 when
// absent).
package main

import (
	"errors"

	"github.com/osprey-ml/osprey/guest-sdk/go/middleware"
	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
)

// DefaultMax is the maximum when the config has no max.
const DefaultMax = 10000

// maxAmount is the largest amount written; larger ones are clipped to it. OnConfig sets it
// from the config the host delivers (ABI 1.1) before the instance's first call.
var maxAmount float64 = DefaultMax

func init() {
	// Parsed once per configuration, not per call; a max that is not a number, or is
	// negative, fails the apply with this message.
	osprey.OnConfig(func(cfg osprey.Config) error {
		m, err := cfg.Float("max", DefaultMax)
		if err != nil {
			return err
		}
		if m < 0 {
			return errors.New("config max: must not be negative")
		}
		maxAmount = m
		return nil
	})
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
	if amount > maxAmount {
		ctx.Info("clipped", "amount", amount, "max", maxAmount, "op", call.Op)
		amount = maxAmount
	}
	return osprey.Float(amount), nil
}

func main() {}
