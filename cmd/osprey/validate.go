package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/osprey-ml/osprey/engine"
)

func runValidate(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: osprey validate FILE|DIR…\n\nParses and validates Feature and DataSource manifests (osprey.dev/v1alpha1, or RaptorML's k8s.raptor.ml/v1alpha1).")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("no manifest given")
	}
	ms, err := engine.LoadManifests(fs.Args()...)
	if err != nil {
		return err
	}
	for _, m := range ms {
		switch {
		case m.Feature != nil:
			fmt.Fprintf(e.stdout, "ok  %-10s %-30s %s\n", m.Kind, m.FQN(), describeFeature(m.Feature))
		default:
			fmt.Fprintf(e.stdout, "ok  %-10s %-30s kind=%s\n", m.Kind, m.FQN(), m.DataSource.Kind)
		}
	}
	return nil
}

// describeFeature is a one-line summary of a feature for people.
func describeFeature(f *engine.Feature) string {
	s := fmt.Sprintf("%s keys=%v fresh<%v stale≥%v", f.Primitive, f.Keys, f.Freshness, f.Staleness)
	if f.Windowed() {
		s += fmt.Sprintf(" window=%v/%v aggr=%s", f.Staleness, f.Granularity, f.Aggrs)
	}
	if kp := f.KeepPrevious; kp != nil {
		s += fmt.Sprintf(" keep=%d/%v", kp.Versions, kp.Over)
	}
	return s
}
