package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// runDev is the embedded default: `osprey serve` with in-process state and notifier, a
// local data directory, and the examples built and applied.
func runDev(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var c serveConfig
	cfgFile := c.register(fs, ".osprey")
	examplesDir := fs.String("examples", "examples", "directory of example manifests and Go guests to build and apply")
	var files multiFlag
	fs.Var(&files, "f", "also apply the manifests in this file or directory (repeatable)")
	s, ln, err := startServing(ctx, e, fs, &c, cfgFile, "Usage: osprey dev [flags]\n\nRuns the embedded default: the API on one port with in-process state and notifier, a local\ndata directory (.osprey), and the examples built (Go guests, with the Go toolchain) and applied.", args)
	if interruptedStart(ctx, e, err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer s.close()
	addr := ln.Addr().String()
	served := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { served <- serveUntilDone(sctx, s.server, ln) }()

	// Apply the examples through the API, as a user would with `osprey apply`.
	paths := append([]string(nil), files...)
	if st, err := os.Stat(*examplesDir); err == nil && st.IsDir() {
		entries, _ := os.ReadDir(*examplesDir)
		for _, de := range entries {
			if de.IsDir() {
				if m, _ := filepath.Glob(filepath.Join(*examplesDir, de.Name(), "*.yaml")); len(m) > 0 {
					paths = append(paths, filepath.Join(*examplesDir, de.Name()))
				}
			}
		}
	} else {
		e.log.Warn("no examples directory; starting without examples", "dir", *examplesDir)
	}
	if len(paths) > 0 {
		cf := &clientFlags{addr: "http://" + addr, output: "text", protocol: "connect", timeout: 0}
		if tok := writeToken(c.Tokens); tok != "" {
			cf.token = tok
		}
		cf.timeout = 5 * 60e9
		e.log.Info("applying examples (building the Go guests on first run)", "paths", paths)
		if err := applyFiles(ctx, &env{stdin: e.stdin, stdout: e.stderr, stderr: e.stderr, log: e.log}, cf, paths); err != nil {
			stop()
			<-served
			return fmt.Errorf("applying the examples: %w", err)
		}
	}
	s.server.SetReady(true)
	fmt.Fprintf(e.stdout, devBanner, addr, addr, addr, addr, addr)
	return <-served
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

const devBanner = `
Osprey is serving Connect, gRPC and gRPC-Web on http://%s with the examples applied.
Try, from another terminal:

  # Feed transactions to the fraud program, then read the per-card window:
  go run ./cmd/osprey ingest fraud.transactions examples/fraud/transactions.jsonl
  curl -s -H 'Content-Type: application/json' -d '{"selector":"fraud.amount+avg","keys":{"card_id":"c1"}}' http://%s/osprey.v1.EngineService/Get

  # The same over gRPC (reflection: no proto files needed):
  go tool buf curl --protocol grpc --http2-prior-knowledge -d '{"selector":"fraud.amount","keys":{"card_id":"c1"}}' http://%s/osprey.v1.EngineService/Get

  # A derived feature computed on request from two others:
  go run ./cmd/osprey set fraud.limit card_id=c1 500
  go run ./cmd/osprey get fraud.utilisation card_id=c1

  # A Wasm middleware rejecting a negative amount:
  go run ./cmd/osprey set payments.amount account_id=a1 -5

  go run ./cmd/osprey features --addr http://%s
  go run ./cmd/osprey dry-run fraud.amount '{"card_id":"c9","amount_cents":705,"status":"approved"}' --addr http://%s

Ctrl-C stops the server (in-flight calls drain first).
`
