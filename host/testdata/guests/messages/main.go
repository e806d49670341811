//go:build wasip1

// Command messages is a Go guest (ABI 1.2) that sends messages as the row's "mode" field
// says, and receives them, for the host's tests.
//
// As a sender (a feature of rows with fields id, mode, to, n, token, delay, egress), it
// sends n to the address (to, {id}), later (after delay nanoseconds, under token), cancels
// token, or sends {id, n} to an egress, and returns 1; an error the host returns fails the
// call, except in mode "swallow", which returns -1 instead.
//
// As a receiver (a string feature keyed by id whose messages are ints), it returns
// "from=… hops=… attempt=… value=… ts=…" and, while the value is positive, sends the value
// minus one to its own address; when that send is refused, it returns
// "refused at hops=…: " and the error.
package main

import (
	"errors"
	"strconv"
	"time"

	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

func init() {
	program.Handle(onRow)
	program.HandleMessage(onMessage)
}

func onRow(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
	mode, err := row.String("mode")
	if err != nil {
		return program.Result{}, err
	}
	id, err := row.String("id")
	if err != nil {
		return program.Result{}, err
	}
	str := func(name string) string {
		s, _ := row.String(name)
		return s
	}
	n, _ := row.Int("n")
	to := osprey.Address{FQN: str("to"), Keys: osprey.K("id", id)}
	switch mode {
	case "send", "swallow":
		err = ctx.Send(to, osprey.Int(n))
	case "sendnull":
		err = ctx.Send(to, osprey.Null())
	case "after":
		delay, _ := row.Int("delay")
		err = ctx.SendAfter(time.Duration(delay), str("token"), to, osprey.Int(n))
	case "cancel":
		err = ctx.Cancel(str("token"))
	case "egress":
		err = ctx.Egress(str("egress"), osprey.F("id", osprey.String(id)), osprey.F("n", osprey.Int(n)))
	default:
		return program.Result{}, errors.New("unknown mode " + mode)
	}
	if err != nil && mode == "swallow" {
		return program.Result{Value: osprey.Int(-1)}, nil
	}
	if err != nil {
		return program.Result{}, err
	}
	return program.Result{Value: osprey.Int(1)}, nil
}

func onMessage(ctx *osprey.Context, msg osprey.Message) (program.Result, error) {
	if msg.Value.Tag != osprey.TagInt {
		return program.Result{}, errors.New("a message of kind " + msg.Value.Tag.String())
	}
	v := msg.Value.I
	text := "from=" + msg.From.String() + " hops=" + strconv.Itoa(msg.Hops) + " attempt=" + strconv.Itoa(msg.Attempt) +
		" value=" + strconv.FormatInt(v, 10) + " ts=" + strconv.FormatInt(ctx.Timestamp().UnixNano(), 10)
	if v > 0 {
		if err := ctx.Send(osprey.Address{FQN: ctx.FQN(), Keys: ctx.Keys()}, osprey.Int(v-1)); err != nil {
			text = "refused at hops=" + strconv.Itoa(msg.Hops) + ": " + err.Error()
		}
	}
	return program.Result{Value: osprey.String(text)}, nil
}

func main() {}
