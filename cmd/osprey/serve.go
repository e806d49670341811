package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/osprey-ml/osprey/console"
	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/host/extism"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/egress"
	_ "github.com/osprey-ml/osprey/plugins/egress/redisstream"  // "redis-stream" egress
	_ "github.com/osprey-ml/osprey/plugins/egress/webhook"      // "webhook" egress
	_ "github.com/osprey-ml/osprey/plugins/notifier/redis"      // "redis" notifier
	_ "github.com/osprey-ml/osprey/plugins/registrystore/dir"   // "dir" registry store
	_ "github.com/osprey-ml/osprey/plugins/registrystore/redis" // "redis" registry store
	_ "github.com/osprey-ml/osprey/plugins/state/redis"         // "redis" state
	"github.com/osprey-ml/osprey/registry"
	"github.com/osprey-ml/osprey/server"
)

// serveConfig is what `osprey serve` and `osprey dev` run with. Each field is a flag, an
// OSPREY_* environment variable and a key of the optional YAML config file; a flag beats
// the environment, which beats the file, which beats the default.
type serveConfig struct {
	Listen          string        `yaml:"listen"`
	State           string        `yaml:"state"`
	StateConfig     string        `yaml:"state-config"`
	RedisURL        string        `yaml:"redis-url"`
	EncoderConfig   string        `yaml:"encoder-config"`
	Notifier        string        `yaml:"notifier"`
	NotifierConfig  string        `yaml:"notifier-config"`
	DataDir         string        `yaml:"data-dir"`
	Registry        string        `yaml:"registry"`
	RegistryConfig  string        `yaml:"registry-config"`
	Tokens          string        `yaml:"tokens"`
	CORSOrigins     string        `yaml:"cors-origins"`
	MaxMessageBytes int           `yaml:"max-message-bytes"`
	MemoryCeiling   string        `yaml:"memory-ceiling"`
	MemoryBudget    string        `yaml:"memory-budget"`
	RestoreTimeout  time.Duration `yaml:"restore-timeout"`
	MaxTimeout      time.Duration `yaml:"max-timeout"`
	PipelineDepth   int           `yaml:"pipeline-depth"`
	DebugListen     string        `yaml:"debug-listen"`
	History         string        `yaml:"history"`
	HistoryConfig   string        `yaml:"history-config"`
	HistoryCollect  time.Duration `yaml:"history-collect"`
	Plugin          pluginPolicyFlags
	Egress          egressPolicyFlags
	NoMetrics       bool `yaml:"no-metrics"`
}

func (c *serveConfig) register(fs *flag.FlagSet, dataDir string) *string {
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "address to serve Connect, gRPC and gRPC-Web on (env OSPREY_LISTEN)")
	fs.StringVar(&c.State, "state", "memory", "state provider by name: "+strings.Join(plugins.StateNames(), ", ")+" (env OSPREY_STATE)")
	fs.StringVar(&c.StateConfig, "state-config", "", "state provider config, key=value,… (redis: url, addrs, username, password, db, tls, pool-size, dial-timeout, read-timeout, write-timeout, master-name, cluster; see docs/redis.md) (env OSPREY_STATE_CONFIG)")
	fs.StringVar(&c.RedisURL, "redis-url", "", "shortcut for --state redis --state-config url=URL: redis://[user:password@]host:port[/db] or rediss://… (env OSPREY_REDIS_URL)")
	fs.StringVar(&c.Notifier, "notifier", "memory", "notifier by name: "+strings.Join(plugins.NotifierNames(), ", ")+" (env OSPREY_NOTIFIER)")
	fs.StringVar(&c.EncoderConfig, "encoder-config", "", "selector encodings' config, name.key=value,…, e.g. hash.key-env=HASH_KEY (encodings: "+strings.Join(plugins.EncoderNames(), ", ")+"; env OSPREY_ENCODER_CONFIG)")
	fs.StringVar(&c.NotifierConfig, "notifier-config", "", "notifier config, key=value,… (redis: url or addrs=HOST:PORT[;HOST:PORT…], username, password, db, tls, master-name, prefix, shards, max-len, claim-idle, block, groups=A[;B…]; see docs/redis.md) (env OSPREY_NOTIFIER_CONFIG)")
	fs.StringVar(&c.DataDir, "data-dir", dataDir, "directory for the registry and the module compilation cache; empty keeps them in memory (env OSPREY_DATA_DIR)")
	fs.StringVar(&c.Registry, "registry", "", "registry store by name: "+strings.Join(plugins.RegistryStoreNames(), ", ")+"; empty: dir when --data-dir is set (in <data-dir>/registry), otherwise none (the registry lives in memory) (env OSPREY_REGISTRY)")
	fs.StringVar(&c.RegistryConfig, "registry-config", "", "registry store config, key=value,… (dir: dir=PATH, default <data-dir>/registry; redis: url, addrs=HOST:PORT[;HOST:PORT…], master-name, username, password, db, prefix, timeout; see docs/redis.md) (env OSPREY_REGISTRY_CONFIG)")
	fs.StringVar(&c.Tokens, "tokens", "", "bearer tokens, token:read or token:write, comma-separated; empty: no auth (env OSPREY_TOKENS)")
	fs.StringVar(&c.CORSOrigins, "cors-origins", "", "browser origins allowed, comma-separated, or * (env OSPREY_CORS_ORIGINS)")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", server.DefaultMaxMessageBytes, "largest request message (env OSPREY_MAX_MESSAGE_BYTES)")
	fs.StringVar(&c.MemoryCeiling, "memory-ceiling", "64Mi", "the most memory one Wasm module may have (env OSPREY_MEMORY_CEILING)")
	fs.StringVar(&c.MemoryBudget, "memory-budget", "", "the most memory all Wasm guests together may have, e.g. 4Gi; empty: a quarter of the machine's (env OSPREY_MEMORY_BUDGET)")
	fs.DurationVar(&c.RestoreTimeout, "restore-timeout", server.DefaultRestoreTimeout, "at start, the longest restoring one stored registry object may take; one that fails or takes longer is quarantined (env OSPREY_RESTORE_TIMEOUT)")
	fs.StringVar(&c.DebugListen, "debug-listen", "", "serve Go's profiling endpoints (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060; empty: none (env OSPREY_DEBUG_LISTEN)")
	fs.StringVar(&c.History, "history", "", "history store by name: "+strings.Join(plugins.HistoryStoreNames(), ", ")+", or none; empty: file when --data-dir is set (in <data-dir>/history), otherwise none (env OSPREY_HISTORY)")
	fs.StringVar(&c.HistoryConfig, "history-config", "", "history store config, key=value,… (file: dir; s3: endpoint, bucket, prefix, region, access_key, secret_key, session_token, secure, path_style, create_bucket; see docs/history.md) (env OSPREY_HISTORY_CONFIG)")
	fs.DurationVar(&c.HistoryCollect, "history-collect", historian.DefaultCollectInterval, "how often the historian collects the window buckets that closed (under 5m: they are kept 10m) (env OSPREY_HISTORY_COLLECT)")
	c.Plugin.register(fs)
	c.Egress.register(fs)
	fs.BoolVar(&c.NoMetrics, "no-metrics", false, "do not serve Prometheus metrics at /metrics (env OSPREY_NO_METRICS); traces follow the OTEL_* environment (docs/observability.md)")
	fs.DurationVar(&c.MaxTimeout, "max-timeout", engine.DefaultMaxTimeout, "the longest spec.timeout a feature may have; one asking for more is refused; 0 is the default (env OSPREY_MAX_TIMEOUT)")
	fs.IntVar(&c.PipelineDepth, "pipeline-depth", engine.DefaultPipelineDepth, "the most plain writes of an Ingest sent to the state in one batch (a Redis pipeline); 1 sends them one at a time; 0 is the default (env OSPREY_PIPELINE_DEPTH)")
	return fs.String("config", os.Getenv("OSPREY_CONFIG"), "YAML config file with the same keys as the flags (env OSPREY_CONFIG)")
}

// resolve applies the config file and the environment under the flags set explicitly.
func (c *serveConfig) resolve(fs *flag.FlagSet, file string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	values := map[string]string{}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("config %s: %w", file, err)
		}
		for k, v := range m {
			if fs.Lookup(k) == nil || k == "config" {
				return fmt.Errorf("config %s: unknown key %q", file, k)
			}
			values[k] = fmt.Sprint(v)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		env := "OSPREY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			values[f.Name] = v
		}
	})
	names := make([]string, 0, len(values))
	for k := range values {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if set[k] || k == "config" {
			continue
		}
		if err := fs.Set(k, values[k]); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// newEncoders builds the selector encodings from "name.key=value,…".
func newEncoders(s string) (engine.EncoderResolver, error) {
	kv, err := parseKV(s, "encoder-config")
	if err != nil {
		return nil, err
	}
	sections := map[string]plugins.Config{}
	for k, v := range kv {
		name, key, ok := strings.Cut(k, ".")
		if !ok || name == "" || key == "" {
			return nil, fmt.Errorf("encoder-config: %q is not name.key=value (e.g. hash.key-env=HASH_KEY)", k+"="+v)
		}
		if sections[name] == nil {
			sections[name] = plugins.Config{}
		}
		sections[name][key] = v
	}
	return plugins.NewEncoders(sections)
}

func parseKV(s, what string) (plugins.Config, error) {
	cfg := plugins.Config{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%s: %q is not key=value", what, part)
		}
		cfg[k] = v
	}
	return cfg, nil
}

func parseTokens(s string) (map[string]server.Scope, error) {
	tokens := map[string]server.Scope{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		tok, scope, ok := strings.Cut(part, ":")
		switch {
		case !ok || tok == "":
			return nil, fmt.Errorf("tokens: %q: want token:read or token:write", part)
		case scope == "read":
			tokens[tok] = server.ScopeRead
		case scope == "write":
			tokens[tok] = server.ScopeWrite
		default:
			return nil, fmt.Errorf("tokens: scope %q: want read or write", scope)
		}
	}
	return tokens, nil
}

// stack is a running host: providers, Wasm host, engine and server.
type stack struct {
	state    engine.State
	notifier engine.Notifier
	host     *host.Host
	plugins  *extism.Set
	// egresses are the applied egresses (what programs emit to); closed after the engine,
	// whose dispatcher emits to them.
	egresses *egress.Set
	obs      *observability
	engine   *engine.Engine
	server   *server.Server
	log      *slog.Logger
	// registry is the registry store; closed first (a shared store's follower stops).
	registry registry.Store
	// history is the historian, nil when history is off; stopped after the engine (its
	// final flush reads buckets), before the notifier.
	history *runningHistorian
}

func (s *stack) close() {
	closeStore(s.registry)
	s.engine.Close()
	s.egresses.Close()
	s.history.stop()
	closeHost(s.log, s.host)
	s.plugins.Close()
	s.notifier.Close()
	s.state.Close()
	s.obs.close()
}

// hostCloseTimeout bounds closing the Wasm host on the way out.
const hostCloseTimeout = 10 * time.Second

// closeHost closes h, waiting at most hostCloseTimeout: guest code the host could not stop
// (a registry restore abandoned at its deadline) may hold it, and must not keep the process
// from exiting.
func closeHost(log *slog.Logger, h *host.Host) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Close(context.Background())
	}()
	t := time.NewTimer(hostCloseTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Error("closing the Wasm host did not finish; exiting without it", "waited", hostCloseTimeout)
	}
}

// applyRedisURL applies --redis-url: it selects the redis state provider (unless --state
// names another, which is an error) and sets its url, unless --state-config already does.
func applyRedisURL(c *serveConfig, stateCfg plugins.Config) error {
	if c.RedisURL == "" {
		return nil
	}
	switch c.State {
	case "memory", "": // the default
		c.State = "redis"
	case "redis":
	default:
		return fmt.Errorf("--redis-url is for --state redis, not --state %s", c.State)
	}
	if _, ok := stateCfg["url"]; !ok {
		stateCfg["url"] = c.RedisURL
	}
	return nil
}

func newStack(ctx context.Context, e *env, c *serveConfig) (*stack, error) {
	stateCfg, err := parseKV(c.StateConfig, "state-config")
	if err != nil {
		return nil, err
	}
	if err := applyRedisURL(c, stateCfg); err != nil {
		return nil, err
	}
	notifierCfg, err := parseKV(c.NotifierConfig, "notifier-config")
	if err != nil {
		return nil, err
	}
	declareHistoryGroup(c, notifierCfg)
	tokens, err := parseTokens(c.Tokens)
	if err != nil {
		return nil, err
	}
	var origins []string
	for _, o := range strings.Split(c.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	st, err := plugins.NewState(ctx, c.State, stateCfg)
	if err != nil {
		return nil, err
	}
	s := &stack{state: st, log: e.log}
	fail := func(err error) (*stack, error) {
		if s.host != nil {
			closeHost(e.log, s.host)
		}
		if s.plugins != nil {
			s.plugins.Close()
		}
		if s.egresses != nil {
			s.egresses.Close()
		}
		s.obs.close()
		if s.notifier != nil {
			s.notifier.Close()
		}
		closeStore(s.registry)
		st.Close()
		return nil, err
	}
	if s.notifier, err = plugins.NewNotifier(ctx, c.Notifier, notifierCfg); err != nil {
		return fail(err)
	}
	ceiling, err := host.ParseSize(c.MemoryCeiling)
	if err != nil {
		return fail(fmt.Errorf("memory-ceiling: %w", err))
	}
	hostOpts := []host.Option{host.WithMemoryCeiling(ceiling)}
	if c.MemoryBudget != "" {
		budget, err := host.ParseSize(c.MemoryBudget)
		if err != nil {
			return fail(fmt.Errorf("memory-budget: %w", err))
		}
		hostOpts = append(hostOpts, host.WithMemoryBudget(int64(budget)))
	}
	if c.DataDir != "" {
		hostOpts = append(hostOpts, host.WithCompilationCache(filepath.Join(c.DataDir, "cache")))
	}
	store, err := newRegistryStore(ctx, c)
	if err != nil {
		return fail(err)
	}
	s.registry = store
	if s.host, err = host.New(ctx, e.log, hostOpts...); err != nil {
		return fail(err)
	}
	if c.PipelineDepth < 0 || c.PipelineDepth > engine.MaxPipelineDepth {
		return fail(fmt.Errorf("pipeline-depth: %d: want 1 to %d (0: the default, %d)", c.PipelineDepth, engine.MaxPipelineDepth, engine.DefaultPipelineDepth))
	}
	if c.PipelineDepth == 0 {
		c.PipelineDepth = engine.DefaultPipelineDepth
	}
	if c.MaxTimeout < 0 {
		return fail(fmt.Errorf("max-timeout: %v is negative", c.MaxTimeout))
	}
	encoders, err := newEncoders(c.EncoderConfig)
	if err != nil {
		return fail(err)
	}
	policy, err := c.Plugin.policy()
	if err != nil {
		return fail(err)
	}
	s.plugins = extism.NewSet(policy, engine.DefaultNamespace, e.log)
	egressPolicy, err := c.Egress.policy()
	if err != nil {
		return fail(err)
	}
	s.egresses = egress.NewSet(egressPolicy, engine.DefaultNamespace, e.log)
	if s.obs, err = newObservability(ctx, c); err != nil {
		return fail(err)
	}
	s.obs.watch(s.host, s.notifier)
	interceptors, err := s.obs.interceptors()
	if err != nil {
		return fail(err)
	}
	handlers := map[string]http.Handler{"/": console.Handler()} // the web console (package console)
	s.obs.handlers(handlers)
	s.engine = engine.New(st, append([]engine.Option{engine.WithNotifier(s.notifier), engine.WithMaxTimeout(c.MaxTimeout),
		engine.WithPipelineDepth(c.PipelineDepth),
		engine.WithPrograms(s.plugins.Programs(s.host)),
		engine.WithMiddlewareResolver(s.plugins.Resolver(s.host.Resolver(plugins.Middlewares))),
		engine.WithEncoderResolver(s.plugins.Encoders(encoders)), engine.WithEgresses(s.egresses), engine.WithLogger(e.log)}, s.obs.engineOptions()...)...)
	// ctx is the command's: SIGINT or SIGTERM during the registry restore stops it.
	s.server, err = server.New(ctx, server.Config{Engine: s.engine, Host: s.host, Plugins: s.plugins, Egresses: s.egresses, Notifier: s.notifier, Registry: store,
		Tokens: tokens, CORSOrigins: origins, MaxMessageBytes: c.MaxMessageBytes, RestoreTimeout: c.RestoreTimeout, Logger: e.log,
		Interceptors: interceptors, Handlers: handlers})
	if err != nil {
		s.engine.Close()
		return fail(err)
	}
	if s.history, err = startHistorian(ctx, e, c, s.engine, s.notifier); err != nil {
		s.server.Close()
		s.engine.Close()
		return fail(err)
	}
	return s, nil
}

// closeStore closes a registry store that needs closing (the redis store: its client and
// change subscription).
func closeStore(st registry.Store) {
	if c, ok := st.(interface{ Close() error }); ok {
		c.Close()
	}
}

// newRegistryStore creates the registry store c names (--registry, --registry-config): by
// default the "dir" store in <data-dir>/registry when there is a data directory, and none
// (nil: the registry lives in memory) when there is not.
func newRegistryStore(ctx context.Context, c *serveConfig) (registry.Store, error) {
	cfg, err := parseKV(c.RegistryConfig, "registry-config")
	if err != nil {
		return nil, err
	}
	name := c.Registry
	if name == "" {
		if c.DataDir == "" {
			if len(cfg) > 0 {
				return nil, errors.New("registry-config: set, but there is no registry store (set --registry or --data-dir)")
			}
			return nil, nil
		}
		name = "dir"
	}
	if name == "dir" && !cfg.Has("dir") {
		if c.DataDir == "" {
			return nil, errors.New("registry dir: needs --data-dir or --registry-config dir=PATH")
		}
		if cfg == nil {
			cfg = plugins.Config{}
		}
		cfg["dir"] = filepath.Join(c.DataDir, "registry")
	}
	st, err := plugins.NewRegistryStore(ctx, name, cfg)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return st, nil
}

// startServing parses a serving command's flags (those of serveConfig plus any the caller
// added to fs), resolves the config file and environment, builds the stack (restoring the
// registry) and listens. The caller closes the stack. When ctx is done before it listens
// (a signal during the restore), it returns an error for which interruptedStart is true.
func startServing(ctx context.Context, e *env, fs *flag.FlagSet, c *serveConfig, cfgFile *string, usage string, args []string) (*stack, net.Listener, error) {
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, usage+"\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if err := c.resolve(fs, *cfgFile); err != nil {
		return nil, nil, err
	}
	s, err := newStack(ctx, e, c)
	if err != nil {
		return nil, nil, err
	}
	if c.DebugListen != "" {
		if _, err := startDebug(ctx, e.log, c.DebugListen); err != nil {
			s.close()
			return nil, nil, err
		}
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		s.close()
		return nil, nil, err
	}
	return s, ln, nil
}

func runServe(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c serveConfig
	cfgFile := c.register(fs, "")
	s, ln, err := startServing(ctx, e, fs, &c, cfgFile, "Usage: osprey serve [flags]\n\nServes the Osprey API (Connect, gRPC, gRPC-Web) on one port.", args)
	if interruptedStart(ctx, e, err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer s.close()
	e.log.Info("serving", "addr", "http://"+ln.Addr().String(), "state", c.State, "notifier", c.Notifier)
	s.server.SetReady(true)
	return serveUntilDone(ctx, s.server, ln)
}

// interruptedStart reports whether err is a start stopped by ctx (SIGINT or SIGTERM before
// the server listened, say during the registry restore), logging it: the command then
// exits cleanly.
func interruptedStart(ctx context.Context, e *env, err error) bool {
	if err == nil || ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		return false
	}
	e.log.Warn("interrupted while starting (the registry was being restored); exiting without serving", "error", err)
	return true
}

func serveUntilDone(ctx context.Context, srv *server.Server, ln net.Listener) error {
	err := srv.Serve(ctx, ln)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
