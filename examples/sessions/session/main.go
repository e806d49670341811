//go:build wasip1

// Command session is the sessions.clicks feature program: the number of clicks in the user's
// current session, a session ending after a period of inactivity (spec.builder.config
// inactivity, a Go duration; 30m by default). Each click counts in the session's storage and
// re-arms a timer to the program's own address (SendAfter with the token "end": the new
// timer replaces the pending one). When the timer fires — no click for the whole period —
// the session ends: its length and click count go to the sessions.completed and
// sessions.avg_seconds features (a fan-out), its storage is cleared, and the value becomes 0.
package main

import (
	"fmt"
	"time"

	"github.com/osprey-ml/osprey/guest-sdk/go/osprey"
	"github.com/osprey-ml/osprey/guest-sdk/go/program"
)

// inactivity ends a session; OnConfig sets it from spec.builder.config.
var inactivity = 30 * time.Minute

func init() {
	osprey.OnConfig(func(cfg osprey.Config) error {
		s, ok := cfg.Lookup("inactivity")
		if !ok {
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("config inactivity: %q is not a positive duration (e.g. 30m)", s)
		}
		inactivity = d
		return nil
	})
	program.Handle(click)
	program.HandleMessage(ended)
}

// self is the address of this invocation: this feature, for the row's user.
func self(ctx *osprey.Context, user string) osprey.Address {
	return osprey.Address{FQN: ctx.FQN(), Keys: osprey.Keys{{Name: "user_id", Value: user}}}
}

// click runs on each row of sessions.clicks.
func click(ctx *osprey.Context, row osprey.Row) (program.Result, error) {
	user, err := row.String("user_id")
	if err != nil {
		return program.Result{}, err
	}
	clicks, started, last := ctx.Storage("clicks"), ctx.Storage("started"), ctx.Storage("last")
	n, _, err := clicks.Int()
	if err != nil {
		return program.Result{}, err
	}
	now := ctx.Timestamp()
	if n == 0 {
		if err := started.Set(osprey.Time(now)); err != nil {
			return program.Result{}, err
		}
	}
	if err := clicks.Set(osprey.Int(n + 1)); err != nil {
		return program.Result{}, err
	}
	if err := last.Set(osprey.Time(now)); err != nil {
		return program.Result{}, err
	}
	// Re-arm the inactivity timer: committed with the count, replacing the pending one.
	if err := ctx.SendAfter(inactivity, "end", self(ctx, user), osprey.String("end")); err != nil {
		return program.Result{}, err
	}
	return program.Result{Value: osprey.Int(n + 1)}, nil
}

// ended runs when the inactivity timer fires.
func ended(ctx *osprey.Context, msg osprey.Message) (program.Result, error) {
	clicks, started, last := ctx.Storage("clicks"), ctx.Storage("started"), ctx.Storage("last")
	n, found, err := clicks.Int()
	if err != nil || !found {
		return program.Result{}, err // nothing in progress (a duplicate delivery): nothing to do
	}
	t0, _, err := started.Time()
	if err != nil {
		return program.Result{}, err
	}
	t1, _, err := last.Time()
	if err != nil {
		return program.Result{}, err
	}
	length := t1.Sub(t0).Seconds()
	for _, fqn := range []string{"sessions.completed", "sessions.avg_seconds"} {
		to := osprey.Address{FQN: fqn, Keys: ctx.Keys()}
		if err := ctx.Send(to, osprey.Float(length)); err != nil {
			return program.Result{}, err
		}
	}
	for _, s := range []osprey.Storage{clicks, started, last} {
		if err := s.Clear(); err != nil {
			return program.Result{}, err
		}
	}
	ctx.Info("session ended", "clicks", n, "seconds", length)
	return program.Result{Value: osprey.Int(0)}, nil
}

func main() {}
