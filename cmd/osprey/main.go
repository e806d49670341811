// Command osprey is Osprey's single binary: the embedded development host and the tools
// around it. Run `osprey help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/osprey-ml/osprey/internal/logging"
)

// version is set by the build (-ldflags "-X main.version=…").
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// env is what every command gets: its streams and logger.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	log            *slog.Logger
}

func commands() []command {
	return []command{
		{"dev", "run the embedded default (in-process state) with the example features, and an interactive shell", runDev},
		{"validate", "parse and validate manifests: osprey validate FILE|DIR…", runValidate},
		{"version", "print the version", func(_ context.Context, e *env, _ []string) error {
			fmt.Fprintln(e.stdout, "osprey", version)
			return nil
		}},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("osprey", flag.ContinueOnError)
	global.SetOutput(stderr)
	level := global.String("log-level", envOr("OSPREY_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env OSPREY_LOG_LEVEL)")
	format := global.String("log-format", envOr("OSPREY_LOG_FORMAT", "auto"), "log format: auto (text on a terminal, JSON otherwise), text, json (env OSPREY_LOG_FORMAT)")
	global.Usage = func() { usage(global) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	lvl, err := logging.ParseLevel(*level)
	if err != nil {
		fmt.Fprintln(stderr, "osprey:", err)
		return 2
	}
	fmtName, err := logging.ParseFormat(*format)
	if err != nil {
		fmt.Fprintln(stderr, "osprey:", err)
		return 2
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr,
		log: logging.New(stderr, logging.Options{Level: lvl, Format: fmtName})}
	rest := global.Args()
	if len(rest) == 0 || rest[0] == "help" || rest[0] == "-h" {
		usage(global)
		if len(rest) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == rest[0] {
			if err := c.run(ctx, e, rest[1:]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return 0
				}
				fmt.Fprintf(stderr, "osprey %s: %v\n", c.name, err)
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "osprey: unknown command %q (run `osprey help`)\n", rest[0])
	return 2
}

func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Osprey %s — a WebAssembly-sandboxed feature runtime.\n\nUsage: osprey [flags] COMMAND [args]\n\nCommands:\n", version)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.PrintDefaults()
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
