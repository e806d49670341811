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

	"connectrpc.com/connect"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/host/extism"
	"github.com/osprey-ml/osprey/manifest"
)

// pluginCallUsage is osprey plugin call's usage line.
const pluginCallUsage = "Usage: osprey plugin call PLUGIN FUNCTION INPUT|@FILE|- [flags]\n       osprey plugin call -f PLUGIN.yaml FUNCTION INPUT|@FILE|- [flags]"

// runPlugin is `osprey plugin call`: one function of a plugin run on an input — of a plugin
// applied on the server (CallPlugin), or, with -f, of a Plugin manifest's module in this
// process, under the same sandbox and the policy the flags set, for plugin authors testing
// a plugin before applying it.
func runPlugin(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "call" {
		fmt.Fprintln(e.stderr, pluginCallUsage)
		return errors.New("want: osprey plugin call")
	}
	fs := flag.NewFlagSet("plugin call", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	file := fs.String("f", "", "run the plugin of this Plugin manifest in this process (its spec.module is a path relative to it) instead of one applied on the server")
	var cf clientFlags
	cf.register(fs)
	var pf pluginPolicyFlags
	pf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, pluginCallUsage+"\n\nRuns one function of a plugin on an input (a JSON text, @FILE, or - for stdin) and prints its output:\nof the plugin PLUGIN applied on the server (--addr, --token), or, with -f, of a manifest's plugin\nin this process, under the host's sandbox and the policy the --plugin-* flags set. Nothing is applied\nor written.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	want := 3
	if *file != "" {
		want = 2
	}
	if fs.NArg() != want {
		fs.Usage()
		if *file != "" {
			return errors.New("want -f PLUGIN.yaml, a FUNCTION and an INPUT")
		}
		return errors.New("want a PLUGIN, a FUNCTION and an INPUT (or -f PLUGIN.yaml, a FUNCTION and an INPUT)")
	}
	rest := fs.Args()
	input, err := pluginInput(e, rest[len(rest)-1])
	if err != nil {
		return err
	}
	fn := rest[len(rest)-2]
	var out []byte
	if *file == "" {
		out, err = callServerPlugin(ctx, &cf, rest[0], fn, input)
	} else {
		out, err = callLocalPlugin(ctx, e, &pf, *file, fn, input)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\n", out)
	return nil
}

// pluginInput reads a plugin call's input: a text, @FILE, or - for stdin.
func pluginInput(e *env, in string) ([]byte, error) {
	var input []byte
	var err error
	switch {
	case in == "-":
		input, err = readAllLimited(e.stdin, 16<<20)
	case strings.HasPrefix(in, "@"):
		input, err = os.ReadFile(in[1:])
	default:
		input = []byte(in)
	}
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	return input, nil
}

// callServerPlugin calls a function of a plugin applied on the server.
func callServerPlugin(ctx context.Context, cf *clientFlags, plugin, fn string, input []byte) ([]byte, error) {
	c, err := cf.dial()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	res, err := c.registry.CallPlugin(cctx, connect.NewRequest(&ospreyv1.CallPluginRequest{Plugin: plugin, Function: fn, Input: input}))
	if err != nil {
		return nil, serverError(err)
	}
	return res.Msg.GetOutput(), nil
}

// callLocalPlugin loads the plugin of a manifest file in this process and calls fn.
func callLocalPlugin(ctx context.Context, e *env, pf *pluginPolicyFlags, file, fn string, input []byte) ([]byte, error) {
	ms, err := manifest.Load(file)
	if err != nil {
		return nil, err
	}
	var p *manifest.Plugin
	for _, m := range ms {
		if m.Plugin != nil {
			if p != nil {
				return nil, fmt.Errorf("%s: more than one Plugin manifest; give a file with one", file)
			}
			p = m.Plugin
		}
	}
	if p == nil {
		return nil, fmt.Errorf("%s: no Plugin manifest", file)
	}
	if strings.HasPrefix(p.Module, "sha256:") {
		return nil, fmt.Errorf("%s: spec.module is a digest (%s); plugin call -f needs the module's file", file, p.Module)
	}
	path := p.Module
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(file), path)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("spec.module: %w", err)
	}
	policy, err := pf.policy()
	if err != nil {
		return nil, err
	}
	pl, err := extism.Load(ctx, policy, extism.SpecOf(p, wasm), e.log)
	if err != nil {
		return nil, err
	}
	defer pl.Close(context.WithoutCancel(ctx))
	start := time.Now()
	out, err := pl.Call(ctx, fn, input)
	e.log.Debug("plugin call", "plugin", p.FQN, "function", fn, "took", time.Since(start))
	return out, err
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
