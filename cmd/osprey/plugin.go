package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/osprey-ml/osprey/host/extism"
	"github.com/osprey-ml/osprey/manifest"
)

// runPlugin is `osprey plugin call`: one function of a Plugin manifest's module run on an
// input, in this process, under the same sandbox and policy the host applies — for plugin
// authors testing a plugin before applying it.
func runPlugin(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "call" {
		fmt.Fprintln(e.stderr, "Usage: osprey plugin call -f PLUGIN.yaml FUNCTION INPUT|@FILE|- [flags]")
		return errors.New("want: osprey plugin call")
	}
	fs := flag.NewFlagSet("plugin call", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	file := fs.String("f", "", "the Plugin manifest (its spec.module is a path relative to it)")
	hosts := fs.String("plugin-allowed-hosts", "", "hosts any plugin may make HTTP requests to, comma-separated (exact names or globs such as *.example.com); empty: none")
	maxTimeout := fs.Duration("plugin-max-timeout", extism.DefaultPolicy.Max.Timeout, "the longest spec.limits.timeout a plugin may ask for")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: osprey plugin call -f PLUGIN.yaml FUNCTION INPUT|@FILE|- [flags]\n\nRuns one function of a plugin on an input (a JSON text, @FILE, or - for stdin) in this process,\nunder the host's sandbox and the policy the flags set, and prints its output. Nothing is applied.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *file == "" || fs.NArg() != 2 {
		fs.Usage()
		return errors.New("want -f PLUGIN.yaml, a FUNCTION and an INPUT")
	}
	ms, err := manifest.Load(*file)
	if err != nil {
		return err
	}
	var p *manifest.Plugin
	for _, m := range ms {
		if m.Plugin != nil {
			if p != nil {
				return fmt.Errorf("%s: more than one Plugin manifest; give a file with one", *file)
			}
			p = m.Plugin
		}
	}
	if p == nil {
		return fmt.Errorf("%s: no Plugin manifest", *file)
	}
	if strings.HasPrefix(p.Module, "sha256:") {
		return fmt.Errorf("%s: spec.module is a digest (%s); plugin call needs the module's file", *file, p.Module)
	}
	path := p.Module
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(*file), path)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("spec.module: %w", err)
	}
	fn, in := fs.Arg(0), fs.Arg(1)
	var input []byte
	switch {
	case in == "-":
		input, err = readAllLimited(e.stdin, 16<<20)
	case strings.HasPrefix(in, "@"):
		input, err = os.ReadFile(in[1:])
	default:
		input = []byte(in)
	}
	if err != nil {
		return fmt.Errorf("input: %w", err)
	}
	policy := extism.DefaultPolicy
	policy.Max.Timeout = *maxTimeout
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			policy.AllowedHosts = append(policy.AllowedHosts, h)
		}
	}
	fns := make([]string, len(p.Functions))
	for i, f := range p.Functions {
		fns[i] = f.Name
	}
	pl, err := extism.Load(ctx, policy, extism.Spec{Name: p.FQN, Module: wasm, Functions: fns, Config: p.Config, AllowedHosts: p.AllowedHosts,
		Limits: extism.Limits{Timeout: p.Limits.Timeout, MemoryPages: p.Limits.MemoryPages, MaxHTTPResponseBytes: p.Limits.HTTPResponseBytes,
			MaxOutputBytes: p.Limits.OutputBytes}}, e.log)
	if err != nil {
		return err
	}
	defer pl.Close(context.WithoutCancel(ctx))
	start := time.Now()
	out, err := pl.Call(ctx, fn, input)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\n", out)
	e.log.Debug("plugin call", "plugin", p.FQN, "function", fn, "took", time.Since(start))
	return nil
}

// readAllLimited reads r to its end, failing beyond max bytes.
func readAllLimited(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("more than %d bytes", max)
	}
	return b, nil
}
