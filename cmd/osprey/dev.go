package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/examples"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins"
	_ "github.com/osprey-ml/osprey/plugins/encoder"         // selector encodings: hash, json
	_ "github.com/osprey-ml/osprey/plugins/middleware"      // native middlewares
	_ "github.com/osprey-ml/osprey/plugins/notifier/memory" // "memory" notifier
	_ "github.com/osprey-ml/osprey/plugins/state/memory"    // "memory" state
	"github.com/osprey-ml/osprey/registry"
	"github.com/osprey-ml/osprey/server"
)

func runShell(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("shell", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var files multiFlag
	fs.Var(&files, "f", "also apply the manifests in this file or directory (repeatable)")
	noExamples := fs.Bool("no-examples", false, "do not apply the embedded example manifests")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: osprey shell [-f FILE|DIR]… [-no-examples]\n\nRuns an engine in this process — in-process state and notifier, the sourceless example\nfeatures applied, no server — with a shell on standard input (get, set, append, incr,\nupdate, features, describe, help).\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	state, err := plugins.NewState(ctx, "memory", nil)
	if err != nil {
		return err
	}
	defer state.Close()
	notifier, err := plugins.NewNotifier(ctx, "memory", nil)
	if err != nil {
		return err
	}
	defer notifier.Close()
	encoders, err := plugins.NewEncoders(nil)
	if err != nil {
		return err
	}
	eng := engine.New(state, engine.WithNotifier(notifier), engine.WithLogger(e.log),
		engine.WithMiddlewareResolver(plugins.Middlewares), engine.WithEncoderResolver(encoders))
	// The same registry as osprey serve and dev, without a Store (nothing persists) and
	// without a Wasm host (programs and Wasm middlewares need osprey dev).
	reg, err := registry.New(registry.Config{Engine: eng, Logger: e.log})
	if err != nil {
		return err
	}

	var ms []manifest.Manifest
	if !*noExamples {
		if ms, err = embeddedManifests(); err != nil {
			return err
		}
	}
	if len(files) > 0 {
		more, err := manifest.Load(files...)
		if err != nil {
			return err
		}
		ms = append(ms, more...)
	}
	var apply []manifest.Manifest
	for _, m := range ms {
		if m.Feature == nil || usesWasm(m.Feature) {
			continue // programs, Wasm middlewares and plugins need the hosts of osprey dev
		}
		apply = append(apply, m)
	}
	if len(apply) > 0 {
		if _, err := reg.Apply(ctx, apply, nil, registry.ApplyOptions{}); err != nil {
			return err
		}
	}
	sh := &shell{eng: eng, out: e.stdout}
	interactive := isTerminal(e.stdin)
	if interactive {
		sh.banner()
	}
	return sh.run(ctx, e.stdin, interactive)
}

// usesWasm reports whether f needs a Wasm module run: a program, a Wasm middleware, or a
// plugin's function.
func usesWasm(f *engine.Feature) bool {
	if f.Builder.Module != "" || f.Builder.Plugin != "" {
		return true
	}
	for _, m := range f.Middlewares {
		if m.Module != "" || m.Plugin != "" {
			return true
		}
	}
	return false
}

func embeddedManifests() ([]manifest.Manifest, error) {
	var ms []manifest.Manifest
	err := fs.WalkDir(examples.Manifests, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := examples.Manifests.ReadFile(path)
		if err != nil {
			return err
		}
		more, err := manifest.Parse(data, "examples/"+path)
		ms = append(ms, more...)
		return err
	})
	return ms, err
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// shell runs engine commands read line by line.
type shell struct {
	eng *engine.Engine
	out io.Writer
}

func (s *shell) banner() {
	fmt.Fprintf(s.out, "Osprey %s — embedded default (in-process state). Features:\n", buildVersion())
	s.features()
	fmt.Fprint(s.out, `
Try:
  update shop.spend card_id=c1 12.5
  update shop.spend card_id=c1 40
  get shop.spend card_id=c1
  get shop.spend+avg card_id=c1
  set geo.city user_id=u1 Lisbon
  set geo.city user_id=u1 Porto
  get geo.city@-1 user_id=u1
  append shop.recent_merchants card_id=c1 '["shop-1","shop-2"]'
  incr user.logins user_id=u1 device=phone 1
Type help for every command, quit (or Ctrl-D) to stop.
`)
}

const shellHelp = `Commands:
  get SELECTOR KEY=VALUE…                 read a feature (selector: ns.name[+aggr][@-N])
  set|append|incr|update FQN KEY=VALUE… VALUE [--at TIME]
                                          write; VALUE is JSON (1.5, "x", [1,2]) or a bare word;
                                          TIME is RFC 3339 or Unix seconds (default: now)
  features                                list the applied features
  describe SELECTOR                       show a feature's descriptor
  help, quit
`

func (s *shell) run(ctx context.Context, in io.Reader, interactive bool) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for {
		if interactive {
			fmt.Fprint(s.out, "osprey> ")
		}
		if !sc.Scan() {
			if interactive {
				fmt.Fprintln(s.out)
			}
			return sc.Err()
		}
		if ctx.Err() != nil {
			return nil
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !interactive {
			fmt.Fprintln(s.out, "osprey>", line)
		}
		words, err := splitWords(line)
		if err != nil {
			fmt.Fprintln(s.out, "error:", err)
			continue
		}
		if words[0] == "quit" || words[0] == "exit" {
			return nil
		}
		if err := s.exec(ctx, words); err != nil {
			// As the CLI prints the API's errors; the shell's own (a mistyped command) have
			// none of the API's codes. (The shell runs no Wasm: nothing else is internal.)
			code := server.CodeOf(err).String()
			if code == "internal" {
				code = "error"
			}
			fmt.Fprintf(s.out, "%s: %v\n", code, err)
		}
	}
}

func (s *shell) exec(ctx context.Context, w []string) error {
	switch w[0] {
	case "help":
		fmt.Fprint(s.out, shellHelp)
	case "features":
		s.features()
	case "describe":
		if len(w) != 2 {
			return errors.New("usage: describe SELECTOR")
		}
		f, err := s.eng.FeatureDescriptor(ctx, w[1])
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(f, "", "  ")
		fmt.Fprintln(s.out, string(b))
	case "get":
		if len(w) < 2 {
			return errors.New("usage: get SELECTOR KEY=VALUE…")
		}
		keys, rest, err := parseKeys(w[2:])
		if err != nil {
			return err
		}
		if len(rest) > 0 {
			return fmt.Errorf("unexpected %q (keys are KEY=VALUE)", rest[0])
		}
		res, err := s.eng.Get(ctx, w[1], keys)
		if err != nil {
			return err
		}
		printGet(s.out, w[1], res.Found(), res.Fresh, server.ValueProto(res.Value), res.Timestamp)
	case "set", "append", "incr", "update":
		return s.write(ctx, w)
	default:
		return fmt.Errorf("unknown command %q (type help)", w[0])
	}
	return nil
}

func (s *shell) write(ctx context.Context, w []string) error {
	if len(w) < 2 {
		return fmt.Errorf("usage: %s FQN KEY=VALUE… VALUE [--at TIME]", w[0])
	}
	var ts time.Time
	args := make([]string, 0, len(w)-2)
	for i := 2; i < len(w); i++ {
		at, ok := strings.CutPrefix(w[i], "--at=")
		if !ok && w[i] == "--at" {
			if i+1 == len(w) {
				return errors.New("--at: want a TIME")
			}
			at, ok, i = w[i+1], true, i+1
		}
		if !ok {
			args = append(args, w[i])
			continue
		}
		t, err := engine.Convert(engine.PrimitiveTimestamp, jsonOrWord(at))
		if err != nil {
			return fmt.Errorf("--at: %w", err)
		}
		ts = t.Time()
	}
	kv, value, err := writeArgs(w[0], args)
	if err != nil {
		return err
	}
	keys := engine.Keys(kv)
	val := jsonOrWord(value)
	var out engine.Value
	switch w[0] {
	case "set":
		out, err = s.eng.Set(ctx, w[1], keys, val, ts)
	case "append":
		out, err = s.eng.Append(ctx, w[1], keys, val, ts)
	case "incr":
		out, err = s.eng.Incr(ctx, w[1], keys, val, ts)
	default:
		out, err = s.eng.Update(ctx, w[1], keys, val, ts)
	}
	if err != nil {
		return err
	}
	fqn := w[1]
	if f, err := s.eng.FeatureDescriptor(ctx, w[1]); err == nil {
		fqn = f.FQN
	}
	printWrite(s.out, fqn, server.ValueProto(out)) // as the CLI prints it
	return nil
}

func (s *shell) features() {
	for _, f := range s.eng.Features() {
		fmt.Fprintf(s.out, "  %-26s %s\n", f.FQN, describeFeature(f))
	}
}

// parseKeys takes the leading KEY=VALUE words.
func parseKeys(words []string) (engine.Keys, []string, error) {
	keys := engine.Keys{}
	for i, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return keys, words[i:], nil
		}
		if _, dup := keys[k]; dup {
			return nil, nil, fmt.Errorf("key %q given twice", k)
		}
		keys[k] = v
	}
	return keys, nil, nil
}

// jsonOrWord decodes s as JSON (numbers kept exact) or, failing that, takes it as a string.
func jsonOrWord(s string) any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil && !dec.More() {
		return v
	}
	return s
}

// splitWords splits a line at spaces, keeping 'single' and "double" quoted runs together.
func splitWords(line string) ([]string, error) {
	var words []string
	var b strings.Builder
	var quote rune
	inWord := false
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
				if r == '"' {
					b.WriteRune(r)
				}
				continue
			}
			b.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
			if r == '"' {
				b.WriteRune(r) // keep double quotes: "x" is a JSON string
			}
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c", quote)
	}
	if inWord {
		words = append(words, b.String())
	}
	return words, nil
}
