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

// version is set by the build (-ldflags "-X main.version=…"); left "dev", buildVersion
// reads the module's version from the build info.
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
		{"dev", "run the embedded default: the API with in-process state and the examples built and applied", runDev},
		{"serve", "serve the API (Connect, gRPC, gRPC-Web on one port)", runServe},
		{"shell", "an engine in this process with an interactive shell (no server)", runShell},
		{"validate", "parse and validate manifests: osprey validate FILE|DIR…", runValidate},
		{"apply", "apply manifests and their Wasm modules to a host: osprey apply [--dry-run] -f FILE|DIR…", clientCommand("apply", "[--dry-run] -f FILE|DIR…", 0, nil)},
		{"get", "read a feature: osprey get SELECTOR KEY=VALUE…", clientCommand("get", "SELECTOR KEY=VALUE…", 1, runGet)},
		{"set", "set a value: osprey set FQN KEY=VALUE… VALUE", clientCommand("set", "FQN KEY=VALUE… VALUE", 2, runWrite("set"))},
		{"append", "append to a list: osprey append FQN KEY=VALUE… VALUE", clientCommand("append", "FQN KEY=VALUE… VALUE", 2, runWrite("append"))},
		{"incr", "increment a number: osprey incr FQN KEY=VALUE… BY", clientCommand("incr", "FQN KEY=VALUE… BY", 2, runWrite("incr"))},
		{"update", "update (set, append or add to the window): osprey update FQN KEY=VALUE… VALUE", clientCommand("update", "FQN KEY=VALUE… VALUE", 2, runWrite("update"))},
		{"ingest", "send rows (JSON Lines, - for stdin) to a data source: osprey ingest SOURCE ROWS.jsonl", clientCommand("ingest", "SOURCE ROWS.jsonl|-", 2, runIngest)},
		{"features", "list the features, data sources and plugins: osprey features [NAMESPACE]", clientCommand("features", "[NAMESPACE]", 0, runFeatures)},
		{"delete", "delete a feature, data source, plugin or egress from the host: osprey delete FQN", clientCommand("delete", "FQN", 1, runDelete)},
		{"get-many", "read a feature vector for several entities, as a table: osprey get-many SELECTOR[,SELECTOR…] KEY=VALUE… [KEY=VALUE…]", clientCommand("get-many", "SELECTOR[,SELECTOR…] KEY=VALUE… [KEY=VALUE…] (a key given again starts the next entity)", 2, runGetMany)},
		{"watch", "stream a feature's changes until Ctrl-C: osprey watch FQN [KEY=VALUE…]", clientCommand("watch", "FQN [KEY=VALUE…] (no keys: every entity)", 1, runWatch)},
		{"dry-run", "run a program on a row, writing nothing: osprey dry-run FQN ROW.json|'{…}' [KEY=VALUE…]", clientCommand("dry-run", "FQN ROW.json|'{…}' [KEY=VALUE…]", 1, runDryRun)},
		{"history", "read the history offline: osprey history list|get|export (see osprey history help)", runHistory},
		{"plugin", "run one function of an Extism plugin on an input: osprey plugin call PLUGIN FUNCTION INPUT (applied on the server) or -f PLUGIN.yaml (in this process)", runPlugin},
		{"bench", "load-test a running host against a bare connect-go baseline", runBench},
		{"version", "print the version", func(_ context.Context, e *env, _ []string) error {
			fmt.Fprintln(e.stdout, "osprey", buildVersion())
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
	fmt.Fprintf(w, "Osprey %s — a WebAssembly-sandboxed feature runtime.\n\nUsage: osprey [flags] COMMAND [args]\n\nCommands:\n", buildVersion())
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
