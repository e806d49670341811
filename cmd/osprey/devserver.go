package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/examples"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/manifest"
)

// devApplyTimeout bounds applying the examples (compiling their modules; building them from
// source first with --examples).
const devApplyTimeout = 5 * time.Minute

// runDev is the embedded default: `osprey serve` with in-process state and notifier, a
// local data directory, and the examples applied — the manifests and prebuilt Wasm modules
// embedded in the binary (so it works from any directory, without Go), or with --examples
// DIR those of a directory, built from source. /readyz answers 503 until they are applied.
func runDev(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var c serveConfig
	cfgFile := c.register(fs, ".osprey")
	examplesDir := fs.String("examples", "", "apply the examples of this directory (e.g. examples in a checkout), building their Go guests from source with the Go toolchain, instead of those embedded in the binary")
	noExamples := fs.Bool("no-examples", false, "apply no examples")
	var files multiFlag
	fs.Var(&files, "f", "also apply the manifests in this file or directory (repeatable)")
	s, ln, err := startServing(ctx, e, fs, &c, cfgFile, "Usage: osprey dev [flags]\n\nRuns the embedded default: the API on one port with in-process state and notifier, a local\ndata directory (.osprey), and the examples applied: those embedded in the binary, with their\nprebuilt Wasm modules, or with --examples DIR those of a directory, built from source.\nGET /readyz answers 200 once they are applied (GET /healthz: the process is alive).", args)
	if interruptedStart(ctx, e, err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer s.close()
	s.server.SetReady(false) // until the examples are applied
	addr := ln.Addr().String()
	served := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { served <- serveUntilDone(sctx, s.server, ln) }()

	// Apply the examples through the API, as a user would with `osprey apply`.
	cf := &clientFlags{addr: "http://" + addr, output: "text", protocol: "connect", timeout: devApplyTimeout, token: writeToken(c.Tokens)}
	quiet := &env{stdin: e.stdin, stdout: e.stderr, stderr: e.stderr, log: e.log}
	applied := ""
	err = func() error {
		switch {
		case *noExamples:
		case *examplesDir != "":
			paths, err := exampleDirs(*examplesDir)
			if err != nil {
				return err
			}
			if _, err := exec.LookPath("go"); err != nil {
				return fmt.Errorf("--examples %s: building the examples from source needs the Go toolchain (https://go.dev/dl), which is not on PATH; without --examples, osprey dev applies the prebuilt examples it embeds", *examplesDir)
			}
			e.log.Info("applying the examples, building their Go guests", "dir", *examplesDir)
			if err := applyFiles(ctx, quiet, cf, paths, applyOptions{}); err != nil {
				return err
			}
			applied = "the examples of " + *examplesDir
		default:
			e.log.Info("applying the embedded examples")
			if err := applyEmbeddedExamples(ctx, quiet, cf); err != nil {
				return err
			}
			applied = "the examples"
		}
		if len(files) > 0 {
			return applyFiles(ctx, quiet, cf, files, applyOptions{})
		}
		return nil
	}()
	if err != nil {
		stop()
		<-served
		return fmt.Errorf("applying the examples: %w", err)
	}
	s.server.SetReady(true)
	fmt.Fprint(e.stdout, devBanner(addr, applied, devCommand(os.Args[0]), fileExists(filepath.Join("examples", "fraud", "transactions.jsonl"))))
	return <-served
}

// exampleDirs returns the subdirectories of dir that hold manifests.
func exampleDirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--examples: %w", err)
	}
	var paths []string
	for _, de := range entries {
		if de.IsDir() {
			if m, _ := filepath.Glob(filepath.Join(dir, de.Name(), "*.yaml")); len(m) > 0 {
				paths = append(paths, filepath.Join(dir, de.Name()))
			}
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("--examples %s: no subdirectory holds *.yaml manifests", dir)
	}
	return paths, nil
}

// applyEmbeddedExamples applies the example manifests embedded in the binary, in path
// order, with the prebuilt modules they name.
func applyEmbeddedExamples(ctx context.Context, e *env, cf *clientFlags) error {
	c, err := cf.dial()
	if err != nil {
		return err
	}
	var paths []string
	if err := fs.WalkDir(examples.Manifests, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			paths = append(paths, p)
		}
		return err
	}); err != nil {
		return err
	}
	for _, p := range paths {
		data, err := examples.Manifests.ReadFile(p)
		if err != nil {
			return err
		}
		ms, err := manifest.Parse(data, "examples/"+p)
		if err != nil {
			return err
		}
		modules := map[string][]byte{}
		for _, m := range ms {
			for _, ref := range moduleRefs(m) {
				if modules[ref] != nil {
					continue
				}
				if modules[ref], err = examples.Module(p, ref); err != nil {
					return fmt.Errorf("%s: %w", m.Pos, err)
				}
			}
		}
		actx, cancel := context.WithTimeout(ctx, cf.timeout)
		res, err := c.registry.ApplyFeature(actx, connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: data, Modules: modules}))
		cancel()
		if err != nil {
			return fmt.Errorf("examples/%s: %w", p, serverError(err))
		}
		for _, a := range res.Msg.Applied {
			fmt.Fprintf(e.stdout, "%s %s %s\n", strings.ToLower(a.Kind), a.Fqn, a.Action)
		}
	}
	return nil
}

// moduleRefs returns the module paths a manifest names (not those by digest).
func moduleRefs(m manifest.Manifest) []string {
	if m.Plugin != nil && !moduleref.Is(m.Plugin.Module) {
		return []string{m.Plugin.Module}
	}
	if m.Feature == nil {
		return nil
	}
	var refs []string
	for _, ref := range append([]string{m.Feature.Builder.Module}, middlewareModules(m.Feature)...) {
		if ref != "" && !moduleref.Is(ref) {
			refs = append(refs, ref)
		}
	}
	return refs
}

func middlewareModules(f *engine.Feature) []string {
	var out []string
	for _, mw := range f.Middlewares {
		out = append(out, mw.Module)
	}
	return out
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

// devCommand is how the banner names the CLI: `go run ./cmd/osprey` when this binary was
// built by go run (it lives in Go's build cache), else `osprey`.
func devCommand(arg0 string) string {
	if strings.Contains(filepath.ToSlash(arg0), "/go-build") {
		return "go run ./cmd/osprey"
	}
	return "osprey"
}

// writeToken picks a write-scoped token from the configured ones, for applying examples.
func writeToken(tokens string) string {
	for _, part := range strings.Split(tokens, ",") {
		if tok, scope, ok := strings.Cut(strings.TrimSpace(part), ":"); ok && scope == "write" {
			return tok
		}
	}
	return ""
}

// devBanner is what osprey dev prints once it is ready: what it serves, what it applied
// (applied: "" for nothing), and commands to try, named as cli. rowsFile says whether
// examples/fraud/transactions.jsonl is here to ingest (in a checkout).
func devBanner(addr, applied, cli string, rowsFile bool) string {
	var b strings.Builder
	if applied == "" {
		fmt.Fprintf(&b, "\nOsprey is serving Connect, gRPC and gRPC-Web on http://%s (no examples applied).\n", addr)
		return b.String() + "Apply manifests with: " + cli + " apply -f DIR\nCtrl-C stops the server (in-flight calls drain first).\n"
	}
	fmt.Fprintf(&b, "\nOsprey is serving Connect, gRPC and gRPC-Web on http://%s with %s applied.\nTry, from another terminal:\n\n", addr, applied)
	if addr != "127.0.0.1:8080" {
		fmt.Fprintf(&b, "  export OSPREY_ADDR=http://%s   # where the CLI calls\n\n", addr)
	}
	b.WriteString("  # Feed transactions to the fraud program, then read the per-card window:\n")
	if rowsFile {
		fmt.Fprintf(&b, "  %s ingest fraud.transactions examples/fraud/transactions.jsonl\n", cli)
	} else {
		fmt.Fprintf(&b, "  printf '%%s\\n' '{\"card_id\":\"c1\",\"amount_cents\":1250,\"status\":\"approved\"}' '{\"card_id\":\"c1\",\"amount_cents\":4000,\"status\":\"approved\"}' |\n    %s ingest fraud.transactions -\n", cli)
	}
	fmt.Fprintf(&b, "  %s get fraud.amount+avg card_id=c1      # fresh: younger than the feature's freshness (30m)\n", cli)
	fmt.Fprintf(&b, "  curl -s -H 'Content-Type: application/json' -d '{\"selector\":\"fraud.amount+avg\",\"keys\":{\"card_id\":\"c1\"}}' http://%s/osprey.v1.EngineService/Get\n\n", addr)
	fmt.Fprintf(&b, "  # Watch the changes of a feature (Ctrl-C stops), and read a feature vector for two cards:\n")
	fmt.Fprintf(&b, "  %s watch fraud.limit\n", cli)
	fmt.Fprintf(&b, "  %s get-many fraud.amount+sum,fraud.limit card_id=c1 card_id=c2\n\n", cli)
	fmt.Fprintf(&b, "  # A derived feature computed on request from two others:\n")
	fmt.Fprintf(&b, "  %s set fraud.limit card_id=c1 500\n", cli)
	fmt.Fprintf(&b, "  %s get fraud.utilisation card_id=c1\n\n", cli)
	fmt.Fprintf(&b, "  # A Wasm middleware rejecting a negative amount:\n")
	fmt.Fprintf(&b, "  %s set payments.amount account_id=a1 -5\n\n", cli)
	fmt.Fprintf(&b, "  %s features\n", cli)
	fmt.Fprintf(&b, "  %s dry-run fraud.amount '{\"card_id\":\"c9\",\"amount_cents\":705,\"status\":\"approved\"}'\n\n", cli)
	b.WriteString("Ctrl-C stops the server (in-flight calls drain first).\n")
	return b.String()
}

// errNoGo reports that building a Go guest needs the Go toolchain.
var errNoGo = errors.New("building a Go guest needs the Go toolchain (https://go.dev/dl), which is not on PATH; or name a prebuilt .wasm file")
