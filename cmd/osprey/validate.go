package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins/egress"
)

func runValidate(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: osprey validate FILE|DIR…\n\nParses and validates Feature, DataSource, Plugin and Egress manifests (osprey.dev/v1alpha1, or RaptorML's\nk8s.raptor.ml/v1alpha1): the files named, and every *.yaml and *.yml file under the directories named,\nrecursively (skipping hidden directories and testdata). An Egress's configuration is checked by its type\n(webhook, redis-stream), as a server would when applying it, short of the server's --egress-allowed-hosts.")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("no manifest given")
	}
	files, err := manifestFiles(fs.Args(), true)
	if err != nil {
		return err
	}
	ms, err := manifest.Load(files...)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		switch {
		case m.Egress != nil:
			// The type checks its configuration; no server policy applies here.
			if err := egress.Check(ctx, m.Egress, egress.Policy{}); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.Pos, err))
				continue
			}
			fmt.Fprintf(e.stdout, "ok  %-10s %-30s type=%s\n", m.Kind, m.FQN(), m.Egress.Type)
		case m.Feature != nil:
			fmt.Fprintf(e.stdout, "ok  %-10s %-30s %s\n", m.Kind, m.FQN(), describeFeature(m.Feature))
		case m.Plugin != nil:
			fns := make([]string, len(m.Plugin.Functions))
			for i, f := range m.Plugin.Functions {
				fns[i] = f.Name + " (" + string(f.Role) + ")"
			}
			fmt.Fprintf(e.stdout, "ok  %-10s %-30s module=%s functions=%s\n", m.Kind, m.FQN(), m.Plugin.Module, strings.Join(fns, ", "))
		default:
			fmt.Fprintf(e.stdout, "ok  %-10s %-30s kind=%s\n", m.Kind, m.FQN(), m.DataSource.Kind)
		}
	}
	return errors.Join(errs...)
}

// describeFeature is a one-line summary of a feature for people.
func describeFeature(f *engine.Feature) string {
	s := fmt.Sprintf("%s keys=%v fresh<%v stale≥%v", f.Primitive, f.Keys, f.Freshness, f.Staleness)
	if f.Messages != engine.PrimitiveUnknown {
		s += " messages=" + f.Messages.String()
	}
	if f.Windowed() {
		s += fmt.Sprintf(" window=%v/%v aggr=%s", f.Staleness, f.Granularity, f.Aggrs)
	}
	if kp := f.KeepPrevious; kp != nil {
		s += fmt.Sprintf(" keep=%d/%v", kp.Versions, kp.Over)
	}
	return s
}

// manifestFiles expands directories to the *.yaml and *.yml files in them — under them,
// recursively, when recursive is set (skipping hidden directories and testdata) — in path
// order; files are kept as given. A directory without one is an error.
func manifestFiles(paths []string, recursive bool) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		n := len(files)
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if path != p && (!recursive || strings.HasPrefix(name, ".") || name == "testdata") {
					return filepath.SkipDir
				}
				return nil
			}
			if ext := strings.ToLower(filepath.Ext(name)); ext == ".yaml" || ext == ".yml" {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(files) == n {
			where := "in it"
			if recursive {
				where = "under it"
			}
			return nil, fmt.Errorf("%s: no *.yaml or *.yml files %s", p, where)
		}
	}
	return files, nil
}
