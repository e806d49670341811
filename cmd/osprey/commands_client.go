package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/manifest"
)

// clientCommand wraps a client command's parsing and dialling.
func clientCommand(name, usage string, minArgs int, body func(ctx context.Context, e *env, c *clients, args []string, fs *flag.FlagSet) error) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		var cf clientFlags
		cf.register(fs)
		var extra func() error
		if name == "apply" {
			var files multiFlag
			fs.Var(&files, "f", "a manifest file or directory (repeatable)")
			dryRun := fs.Bool("dry-run", false, "check everything (validation, modules compiled, middlewares resolved) and change nothing; report what would be created, updated or left unchanged")
			extra = func() error { return applyFiles(ctx, e, &cf, files, applyOptions{dryRun: *dryRun}) }
		}
		at := ""
		if name == "set" || name == "append" || name == "incr" || name == "update" {
			fs.StringVar(&at, "at", "", "the value's timestamp (RFC 3339; default now)")
		}
		fs.Usage = func() {
			fmt.Fprintf(e.stderr, "Usage: osprey %s %s\n\nFlags:\n", name, usage)
			fs.PrintDefaults()
		}
		pos, err := parseClientArgs(fs, args)
		if err != nil {
			return err
		}
		if extra != nil {
			return extra()
		}
		if len(pos) < minArgs {
			fs.Usage()
			return fmt.Errorf("want %s", usage)
		}
		c, err := cf.dial()
		if err != nil {
			return err
		}
		if name != "watch" || flagSet(fs, "timeout") { // a watch streams until Ctrl-C
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cf.timeout)
			defer cancel()
		}
		if err := body(ctx, e, c, pos, fs); err != nil {
			return serverError(err)
		}
		return nil
	}
}

// keyArgs parses KEY=VALUE words.
func keyArgs(words []string) (map[string]string, error) {
	keys := map[string]string{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: keys are KEY=VALUE", w)
		}
		keys[k] = v
	}
	return keys, nil
}

func runGet(ctx context.Context, e *env, c *clients, args []string, _ *flag.FlagSet) error {
	keys, err := keyArgs(args[1:])
	if err != nil {
		return err
	}
	res, err := c.engine.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: args[0], Keys: keys}))
	if err != nil {
		return err
	}
	m := res.Msg
	return c.print(e.stdout, m, func() {
		printGet(e.stdout, args[0], m.Found, m.Fresh, m.Value, m.Timestamp.AsTime())
	})
}

func runWrite(op string) func(context.Context, *env, *clients, []string, *flag.FlagSet) error {
	return func(ctx context.Context, e *env, c *clients, args []string, fs *flag.FlagSet) error {
		keys, value, err := writeArgs(op, args[1:])
		if err != nil {
			return err
		}
		v, err := jsonValue(value)
		if err != nil {
			return err
		}
		ts, err := timestampFlag(fs.Lookup("at").Value.String())
		if err != nil {
			return err
		}
		var fqn string
		var out *ospreyv1.Value
		switch op {
		case "set":
			res, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: args[0], Keys: keys, Value: v, Timestamp: ts}))
			if err != nil {
				return err
			}
			m := res.Msg
			return c.print(e.stdout, m, func() {
				printOutcome(e.stdout, m.Fqn, m.Value, m.Outcome, m.GetTimestamp().AsTime(), m.GetCurrentTimestamp().AsTime(), m.KeptAsPrevious)
			})
		case "append":
			res, err := c.engine.Append(ctx, connect.NewRequest(&ospreyv1.AppendRequest{Fqn: args[0], Keys: keys, Value: v, Timestamp: ts}))
			if err != nil {
				return err
			}
			fqn, out = res.Msg.Fqn, res.Msg.Value
			return c.print(e.stdout, res.Msg, func() { printWrite(e.stdout, fqn, out) })
		case "incr":
			res, err := c.engine.Incr(ctx, connect.NewRequest(&ospreyv1.IncrRequest{Fqn: args[0], Keys: keys, Value: v, Timestamp: ts}))
			if err != nil {
				return err
			}
			fqn, out = res.Msg.Fqn, res.Msg.Value
			return c.print(e.stdout, res.Msg, func() { printWrite(e.stdout, fqn, out) })
		default:
			res, err := c.engine.Update(ctx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: args[0], Keys: keys, Value: v, Timestamp: ts}))
			if err != nil {
				return err
			}
			m := res.Msg
			return c.print(e.stdout, m, func() {
				printOutcome(e.stdout, m.Fqn, m.Value, m.Outcome, m.GetTimestamp().AsTime(), m.GetCurrentTimestamp().AsTime(), m.KeptAsPrevious)
			})
		}
	}
}

func printWrite(w io.Writer, fqn string, v *ospreyv1.Value) {
	if v == nil {
		fmt.Fprintf(w, "ok %s\n", fqn)
		return
	}
	fmt.Fprintf(w, "ok %s = %s\n", fqn, formatValue(v))
}

// printOutcome prints the result of a Set or an Update: as printWrite when it became the
// current value, else that it was superseded by a later value and whether it was kept as a
// previous version or dropped.
func printOutcome(w io.Writer, fqn string, v *ospreyv1.Value, o ospreyv1.WriteOutcome, ts, current time.Time, kept bool) {
	if o != ospreyv1.WriteOutcome_WRITE_OUTCOME_SUPERSEDED {
		printWrite(w, fqn, v)
		return
	}
	fate := "dropped"
	if kept {
		fate = "kept as a previous version"
	}
	fmt.Fprintf(w, "superseded: %s = %s at %s is older than the current value (at %s); %s\n", fqn, formatValue(v),
		ts.UTC().Format(time.RFC3339Nano), current.UTC().Format(time.RFC3339Nano), fate)
}

func runFeatures(ctx context.Context, e *env, c *clients, args []string, _ *flag.FlagSet) error {
	ns := ""
	if len(args) > 0 {
		ns = args[0]
	}
	res, err := c.registry.ListFeatures(ctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{Namespace: ns}))
	if err != nil {
		return err
	}
	return c.print(e.stdout, res.Msg, func() {
		for _, ds := range res.Msg.DataSources {
			fmt.Fprintf(e.stdout, "%-28s data source  kind=%s keys=%v\n", ds.Fqn, ds.Kind, ds.KeyFields)
		}
		for _, f := range res.Msg.Features {
			line := fmt.Sprintf("%-28s %-11s keys=%v fresh<%v stale≥%v builder=%s", f.Fqn, f.Primitive, f.Keys,
				f.Freshness.AsDuration(), f.Staleness.AsDuration(), f.GetBuilder().GetKind())
			if p := f.GetBuilder().GetPlugin(); p != "" {
				line += "(" + p + "/" + f.GetBuilder().GetFunction() + ")"
			}
			if len(f.Aggregations) > 0 {
				line += fmt.Sprintf(" aggr=%s/%v", strings.Join(f.Aggregations, ","), f.Granularity.AsDuration())
			}
			if f.DataSource != "" {
				line += " source=" + f.DataSource
			}
			fmt.Fprintln(e.stdout, line)
		}
		for _, p := range res.Msg.Plugins {
			fns := make([]string, len(p.Functions))
			for i, fn := range p.Functions {
				fns[i] = fn.Name + "(" + fn.Role + ")"
			}
			line := fmt.Sprintf("%-28s plugin       functions=%s", p.Fqn, strings.Join(fns, ","))
			if len(p.AllowedHosts) > 0 {
				line += " hosts=" + strings.Join(p.AllowedHosts, ",")
			}
			fmt.Fprintln(e.stdout, line)
		}
		for _, eg := range res.Msg.Egresses {
			fmt.Fprintf(e.stdout, "%-28s egress       type=%s config=%s\n", eg.Fqn, eg.Type, strings.Join(eg.ConfigKeys, ","))
		}
		// Stored objects that did not restore at the server's start: not served.
		for _, q := range res.Msg.Quarantined {
			fmt.Fprintf(e.stdout, "%-28s QUARANTINED  %s since %s, not served: %s\n", q.Fqn, q.Kind,
				q.Since.AsTime().UTC().Format(time.RFC3339), q.Error)
		}
		if n := len(res.Msg.Quarantined); n > 0 {
			fmt.Fprintf(e.stdout, "%d quarantined: kept in the registry but not served until applied again (osprey apply) or deleted (RegistryService.DeleteFeature)\n", n)
		}
	})
}

const ingestBatch = 500

func runIngest(ctx context.Context, e *env, c *clients, args []string, _ *flag.FlagSet) error {
	rows, lines, err := readRowLines(e.stdin, args[1])
	if err != nil {
		return err
	}
	total := &ospreyv1.IngestResponse{}
	for start := 0; start < len(rows); start += ingestBatch {
		batch := rows[start:min(start+ingestBatch, len(rows))]
		res, err := c.ingest.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: args[0], TypedRows: batch}))
		if err != nil {
			return ingestFailure(args[1], lines[start:start+len(batch)], err) // rows named by their line
		}
		total.Rows += res.Msg.Rows
		total.Written += res.Msg.Written
		total.Skipped += res.Msg.Skipped
		total.Superseded += res.Msg.Superseded
	}
	return c.print(e.stdout, total, func() {
		superseded := ""
		if total.Superseded > 0 {
			superseded = fmt.Sprintf(" (%d of them superseded: older than the current value)", total.Superseded)
		}
		fmt.Fprintf(e.stdout, "ingested %d rows into %s: %d values written%s, %d skipped\n", total.Rows, args[0], total.Written, superseded, total.Skipped)
	})
}

func runDryRun(ctx context.Context, e *env, c *clients, args []string, _ *flag.FlagSet) error {
	row, keys, err := dryRunArgs(e.stdin, args[1:])
	if err != nil {
		return err
	}
	req := &ospreyv1.DryRunRequest{Fqn: args[0], TypedRow: row, Keys: keys}
	res, err := c.registry.DryRun(ctx, connect.NewRequest(req))
	if err != nil {
		return err
	}
	m := res.Msg
	return c.print(e.stdout, m, func() {
		if !m.Writes {
			fmt.Fprintf(e.stdout, "%s: the program writes nothing for this row\n", m.Fqn)
		} else {
			fmt.Fprintf(e.stdout, "%s %v would be %s at %s (nothing written)\n", m.Fqn, m.Keys, formatValue(m.Value), m.Timestamp.AsTime().Format(time.RFC3339))
		}
		for _, s := range m.Storage {
			switch {
			case s.Value == nil:
				fmt.Fprintf(e.stdout, "  storage %s would be cleared\n", s.Name)
			case s.Expires == nil:
				fmt.Fprintf(e.stdout, "  storage %s would be %s\n", s.Name, formatValue(s.Value))
			default:
				fmt.Fprintf(e.stdout, "  storage %s would be %s, until %s\n", s.Name, formatValue(s.Value), s.Expires.AsTime().UTC().Format(time.RFC3339))
			}
		}
		for _, m := range m.Sends {
			when := ""
			if m.Due != nil {
				when = fmt.Sprintf(" at %s (token %q)", m.Due.AsTime().UTC().Format(time.RFC3339), m.Token)
			}
			if m.Egress != "" {
				fmt.Fprintf(e.stdout, "  would emit %s to egress %s%s\n", formatRow(m.Row), m.Egress, when)
			} else {
				fmt.Fprintf(e.stdout, "  would send %s to %s %v%s\n", formatValue(m.Value), m.ToFqn, m.ToKeys, when)
			}
		}
		for _, tok := range m.Cancels {
			fmt.Fprintf(e.stdout, "  would cancel the delayed message %q\n", tok)
		}
	})
}

// applyOptions modify applyFiles.
type applyOptions struct {
	// dryRun sends each file with dry_run: the server checks it and changes nothing. Each
	// file is checked on its own against what the server has applied, so a file that needs
	// what an earlier file of the same run would apply is reported as failing.
	dryRun bool
}

// applyFiles uploads each manifest file with the modules it names, building Go guests
// from source first where a module path names a directory (or a .wasm file that does not
// exist next to a directory of the same name), one ApplyFeature per file.
func applyFiles(ctx context.Context, e *env, cf *clientFlags, paths []string, opts applyOptions) error {
	if len(paths) == 0 {
		return fmt.Errorf("want -f FILE|DIR")
	}
	c, err := cf.dial()
	if err != nil {
		return err
	}
	files, err := manifestFiles(paths, false)
	if err != nil {
		return err
	}
	var all []*ospreyv1.AppliedObject
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		ms, err := manifest.Parse(data, file)
		if err != nil {
			return err
		}
		modules := map[string][]byte{}
		for _, m := range ms {
			var refs []string
			switch {
			case m.Plugin != nil:
				refs = []string{m.Plugin.Module}
			case m.Feature != nil:
				refs = []string{m.Feature.Builder.Module}
				for _, mw := range m.Feature.Middlewares {
					refs = append(refs, mw.Module)
				}
			}
			for _, ref := range refs {
				if ref == "" || moduleref.Is(ref) || modules[ref] != nil {
					continue
				}
				b, err := moduleBytes(ctx, e, filepath.Dir(file), ref)
				if err != nil {
					return fmt.Errorf("%s: %w", m.Pos, err)
				}
				modules[ref] = b
			}
		}
		actx, cancel := context.WithTimeout(ctx, cf.timeout)
		res, err := c.registry.ApplyFeature(actx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: data, Modules: modules, DryRun: opts.dryRun}))
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", file, serverError(err))
		}
		all = append(all, res.Msg.Applied...)
	}
	out := &ospreyv1.ApplyFeatureResponse{Applied: all}
	return c.print(e.stdout, out, func() {
		for _, a := range all {
			if opts.dryRun {
				fmt.Fprintf(e.stdout, "%s %s would be %s (dry run)\n", strings.ToLower(a.Kind), a.Fqn, wouldBe(a.Action))
				continue
			}
			fmt.Fprintf(e.stdout, "%s %s %s\n", strings.ToLower(a.Kind), a.Fqn, a.Action)
		}
	})
}

// wouldBe phrases an apply action for a dry run: "created", "updated", "left unchanged".
func wouldBe(action string) string {
	if action == "unchanged" {
		return "left unchanged"
	}
	return action
}

// moduleBytes reads a module a manifest names. When the path is a directory of Go source,
// or a .wasm file with a directory of Go source of the same name beside it (amount.wasm and
// amount/), the guest is built from that source first — always, so that a stale .wasm is
// never uploaded; Go's build cache keeps a rebuild of unchanged source fast.
func moduleBytes(ctx context.Context, e *env, dir, ref string) ([]byte, error) {
	path := ref
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, ref)
	}
	for _, src := range []string{path, strings.TrimSuffix(path, ".wasm")} {
		if goFiles, _ := filepath.Glob(filepath.Join(src, "*.go")); len(goFiles) > 0 {
			return buildGoGuest(ctx, e, src)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", ref, err)
	}
	return b, nil
}

// buildGoGuest builds a Go guest with the standard toolchain.
func buildGoGuest(ctx context.Context, e *env, src string) ([]byte, error) {
	out, err := os.CreateTemp("", "osprey-guest-*.wasm")
	if err != nil {
		return nil, err
	}
	out.Close()
	defer os.Remove(out.Name())
	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-o", out.Name(), ".")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("build Go guest %s: %w", src, errNoGo)
		}
		return nil, fmt.Errorf("build Go guest %s: %v\n%s", src, err, msg)
	}
	e.log.Info("built Go guest", "source", src)
	return os.ReadFile(out.Name())
}
