// Package server serves Osprey's public API, osprey.v1 (EngineService, RegistryService and
// IngestService), over one port: Connect (JSON and binary), gRPC over h2c and gRPC-Web,
// with gRPC reflection (grpcurl and buf curl work without proto files), gRPC health,
// GET /healthz (liveness) and GET /readyz (readiness), CORS for configured browser
// origins, message size limits and bearer tokens.
//
// Errors carry the codes tabled in errors.go and name the request field at fault. Panics
// are recovered, logged with their stack and answered with Internal; the server keeps
// serving. Serve shuts down gracefully: it stops accepting, ends Watch streams, drains
// in-flight calls and returns.
//
//	s, err := server.New(ctx, server.Config{Engine: eng, Host: h, Notifier: n, Registry: store})
//	...
//	err = s.Serve(ctx, ln) // until ctx is done
//
// With a Registry, New restores what it holds, each object bounded by
// Config.RestoreTimeout; an object that fails or overruns is quarantined (kept in the
// store, not served, listed by ListFeatures) rather than blocking the start. See
// docs/registry.md.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
	"github.com/osprey-ml/osprey/registry"
)

// DefaultMaxMessageBytes is the default largest request message: enough for a Wasm module
// (host.DefaultMaxModuleSize) in an ApplyFeature.
const DefaultMaxMessageBytes = 32 << 20

// DefaultShutdownTimeout is how long Serve waits, by default, for in-flight calls to finish
// once its context is done.
const DefaultShutdownTimeout = 30 * time.Second

// compressMinBytes is the smallest response the server compresses (when the client accepts
// it): below a few KB gzip costs more CPU than the bytes it saves on any network.
const compressMinBytes = 4096

// DefaultRestoreTimeout bounds, by default, the restore of each stored object when New
// restores the registry.
const DefaultRestoreTimeout = registry.DefaultRestoreTimeout

// requestSlack is what a request body may hold beyond its largest message: the framing of
// the gRPC and Connect envelopes, and the few small messages of a reflection stream.
const requestSlack = 1 << 20

// Config configures a Server. Only Engine is required. New reads it once (copying Tokens and
// CORSOrigins); changing it afterwards has no effect.
type Config struct {
	// Engine serves the calls. Required. The Server does not close it.
	Engine *engine.Engine
	// Host accepts the Wasm modules of ApplyFeature requests and manages their lifecycle
	// (registry.Modules; *host.Host satisfies it). Without one, ApplyFeature refuses
	// manifests that name modules, with FailedPrecondition. The engine must have been built
	// with the same Host as its program loader and middleware resolver. The Server does not
	// close it.
	Host registry.Modules
	// Plugins is the plugin host (*extism.Set satisfies it): ApplyFeature applies Plugin
	// manifests to it, features name its plugins, and CallPlugin calls them. Without one,
	// Plugin manifests are refused with Unimplemented and CallPlugin is Unimplemented. The
	// engine must have been built with its middleware resolver, encodings and program
	// loader. The Server does not close it.
	Plugins PluginHost
	// Egresses is the egress set (*egress.Set of plugins/egress satisfies it):
	// ApplyFeature applies Egress manifests to it and DeleteFeature removes them; programs
	// emit to its egresses. Without one, Egress manifests are refused with Unimplemented.
	// The engine must have been built with the same set as its resolver
	// (engine.WithEgresses). The Server does not close it.
	Egresses registry.Egresses
	// Notifier feeds Watch: the Server subscribes to it for its whole life with a consumer
	// group of its own ("watch-<random>"), so every replica sees every change, and deletes
	// the group when it stops. Without one, Watch answers Unimplemented. The Server does not
	// close it.
	Notifier engine.Notifier
	// Registry persists what ApplyFeature and DeleteFeature change; New applies everything
	// it holds again (data sources first), each object under RestoreTimeout, quarantining
	// those that fail. Nil keeps the registry in memory only.
	Registry registry.Store
	// RestoreTimeout bounds the restore of each stored object by New: its manifest parsed,
	// its modules added, and its apply (compiling and instantiating its Wasm modules) under
	// a context with this deadline (DefaultRestoreTimeout when 0). An object whose restore
	// fails or overruns is quarantined.
	RestoreTimeout time.Duration
	// Tokens maps bearer tokens to their scope. Empty: no authentication. Otherwise
	// writes, Ingest and the registry need a ScopeWrite token and reads a ScopeRead (or
	// ScopeWrite) one; gRPC health, reflection, /healthz and /readyz need none.
	Tokens map[string]Scope
	// CORSOrigins are the browser origins allowed to call the API ("https://app.example.com",
	// "https://*.example.com", or "*" for any). Empty: no cross-origin calls.
	CORSOrigins []string
	// MaxMessageBytes caps each request message (DefaultMaxMessageBytes when 0); larger
	// messages and requests fail with ResourceExhausted.
	MaxMessageBytes int
	// ShutdownTimeout bounds how long Serve drains in-flight calls after its context is
	// done (DefaultShutdownTimeout when 0).
	ShutdownTimeout time.Duration
	// Logger receives the server's logs (slog.Default() when nil).
	Logger *slog.Logger
	// Interceptors wrap every API procedure, outermost first, outside the server's own
	// logging: tracing (otelconnect) and metrics (metrics.Metrics.RPC). One exception to
	// the generated types: Ingest's request message (Request.Any) is the server's own type,
	// which embeds an ospreyv1.IngestRequest (a proto.Message all the same, with its
	// source and rows) but, over the binary codec, holds typed_rows already decoded, not
	// in the message: an interceptor should not read or rewrite them there.
	Interceptors []connect.Interceptor
	// Handlers are more HTTP endpoints served on the same port, by http.ServeMux pattern
	// ("GET /metrics", "/" for the web console). They are served as they are: without the
	// API's authentication (a handler that needs it brings its own); the API's procedures,
	// health and reflection paths win over them.
	Handlers map[string]http.Handler
}

// PluginHost is what the Server needs of a plugin host: what the registry needs to apply
// plugins, and calling one function of an applied plugin (CallPlugin).
type PluginHost interface {
	registry.Plugins
	// Call runs function fn of the applied plugin fqn on input and returns its output.
	Call(ctx context.Context, fqn, fn string, input []byte) ([]byte, error)
}

// Server serves the osprey.v1 API over an Engine. Create it with New. Its methods are safe
// for concurrent use.
type Server struct {
	eng             *engine.Engine
	log             *slog.Logger
	maxBytes        int
	shutdownTimeout time.Duration

	handler http.Handler
	health  *grpchealth.StaticChecker
	ready   atomic.Bool
	watch   *watchHub // nil without a Notifier
	reg     *registry.Registry
	extra   map[string]http.Handler
	// interceptors are Config.Interceptors.
	interceptors []connect.Interceptor
	plugins      PluginHost // nil: no plugin host

	// streams is cancelled by Close: every streaming call (Watch, health Watch,
	// reflection) runs under a context that ends with it.
	streams      context.Context
	closeStreams context.CancelFunc
	closeOnce    sync.Once
	serving      atomic.Bool
}

// serviceNames are the services the Server registers, for reflection and health.
var serviceNames = []string{
	ospreyv1connect.EngineServiceName,
	ospreyv1connect.RegistryServiceName,
	ospreyv1connect.IngestServiceName,
}

// streamingProcedures are the procedures whose calls may last until the server closes.
var streamingProcedures = map[string]bool{
	ospreyv1connect.EngineServiceWatchProcedure:                      true,
	"/grpc.health.v1.Health/Watch":                                   true,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      true,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": true,
}

// New returns a Server for cfg. When cfg.Registry is set, New restores every object it
// holds (data sources first, then features), each under its own deadline
// (Config.RestoreTimeout, derived from ctx). An object that does not restore — its manifest
// no longer parses or applies, a module it names is missing or corrupt, its apply fails or
// overruns the deadline — is quarantined: logged at ERROR, kept in the store, not served,
// and listed by ListFeatures with its error until it is applied again or deleted. New does
// not wait for an apply past its deadline plus a short grace: it abandons it (see
// docs/registry.md). A store that cannot be read fails New.
//
// ctx bounds the restore as a whole: when it is done (say, the process got SIGTERM) New
// stops restoring, leaves the remaining objects unrestored and returns an error wrapping
// ctx's error; the caller should then exit. ctx is not used once New returns. The Server
// starts ready (see SetReady).
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("server: Config.Engine is required")
	}
	if cfg.MaxMessageBytes < 0 {
		return nil, fmt.Errorf("server: Config.MaxMessageBytes is negative (%d)", cfg.MaxMessageBytes)
	}
	if cfg.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("server: Config.ShutdownTimeout is negative (%v)", cfg.ShutdownTimeout)
	}
	if cfg.RestoreTimeout < 0 {
		return nil, fmt.Errorf("server: Config.RestoreTimeout is negative (%v)", cfg.RestoreTimeout)
	}
	s := &Server{
		eng:             cfg.Engine,
		log:             cfg.Logger,
		maxBytes:        cfg.MaxMessageBytes,
		shutdownTimeout: cfg.ShutdownTimeout,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With(slog.String("component", "server"))
	if s.maxBytes == 0 {
		s.maxBytes = DefaultMaxMessageBytes
	}
	if s.shutdownTimeout == 0 {
		s.shutdownTimeout = DefaultShutdownTimeout
	}
	auth, err := newAuthenticator(cfg.Tokens)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.plugins = cfg.Plugins
	s.extra = maps.Clone(cfg.Handlers)
	s.interceptors = slices.Clone(cfg.Interceptors)
	if s.reg, err = registry.New(registry.Config{Engine: cfg.Engine, Modules: cfg.Host, Plugins: cfg.Plugins, Egresses: cfg.Egresses, Store: cfg.Registry,
		RestoreTimeout: cfg.RestoreTimeout, Logger: s.log}); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := s.reg.Restore(ctx); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.streams, s.closeStreams = context.WithCancel(context.Background())
	s.health = grpchealth.NewStaticChecker(serviceNames...)
	s.SetReady(true)

	h, err := s.routes(auth)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if h, err = withCORS(cfg.CORSOrigins, h); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.handler = withGrownStack(s.recoverHTTP(h))

	if cfg.Notifier != nil {
		s.watch = newWatchHub(cfg.Notifier, "watch-"+strings.ToLower(rand.Text()), s.log)
	}
	return s, nil
}

// routes builds the handler of every procedure and endpoint.
func (s *Server) routes(auth *authenticator) (http.Handler, error) {
	opts := []connect.HandlerOption{
		connect.WithReadMaxBytes(s.maxBytes),
		// Compress only responses worth it: gzip of a 42-byte Get answer cost 56 % of the
		// server's CPU (each compression resets ~640 KB of flate tables; BENCHMARKS.md).
		connect.WithCompressMinBytes(compressMinBytes),
		connect.WithRecover(s.recovered),
		connect.WithInterceptors(append(slices.Clone(s.interceptors), logInterceptor{s.log})...),
	}
	if auth != nil {
		opts = append(opts, connect.WithRequestGate(auth.gate))
	}
	mux := http.NewServeMux()
	mux.Handle(ospreyv1connect.NewEngineServiceHandler(&engineService{s: s}, opts...))
	mux.Handle(ospreyv1connect.NewRegistryServiceHandler(&registryService{s: s}, opts...))
	mux.Handle(ingestHandler(&ingestService{s: s}, opts...))

	infra := []connect.HandlerOption{connect.WithReadMaxBytes(s.maxBytes), connect.WithRecover(s.recovered)}
	reflector := grpcreflect.NewStaticReflector(append(serviceNames, grpchealth.HealthV1ServiceName)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, infra...))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, infra...))
	mux.Handle(grpchealth.NewHandler(s.health, infra...))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	for _, pattern := range slices.Sorted(maps.Keys(s.extra)) {
		if err := handle(mux, pattern, s.extra[pattern]); err != nil {
			return nil, err
		}
	}

	limit := int64(s.maxBytes) + requestSlack
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		if streamingProcedures[r.URL.Path] {
			// Close ends the call: its context is cancelled (for handlers waiting on it) and
			// its request body closed (for handlers blocked reading the next message).
			ctx, cancel := context.WithCancel(r.Context())
			body := r.Body
			stop := context.AfterFunc(s.streams, func() {
				cancel()
				if body != nil {
					body.Close()
				}
			})
			defer func() { stop(); cancel() }()
			r = r.WithContext(ctx)
		}
		mux.ServeHTTP(w, r)
	}), nil
}

// handle registers one of Config.Handlers, turning ServeMux's panic on a pattern that is
// malformed or conflicts with another into an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	if h == nil {
		return fmt.Errorf("server: Config.Handlers[%q] is nil", pattern)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("server: Config.Handlers[%q]: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// Handler returns the handler of every procedure and endpoint, for use with an http.Server
// of the caller's (which must enable HTTP/1 and unencrypted HTTP/2 for gRPC, as Serve does)
// or httptest. The same handler is returned on every call.
func (s *Server) Handler() http.Handler { return s.handler }

// SetReady sets what GET /readyz (200 or 503) and gRPC health (SERVING or NOT_SERVING)
// report. A Server is ready from New on, New having restored the registry; Serve reports it
// not ready once it starts shutting down. Call SetReady(false) before Serve to hold traffic
// off until, say, a warm-up is done (osprey dev does until its examples are applied).
// GET /healthz, the liveness check, is not affected: it answers 200 while the process serves.
func (s *Server) SetReady(ready bool) {
	s.ready.Store(ready)
	status := grpchealth.StatusNotServing
	if ready {
		status = grpchealth.StatusServing
	}
	s.health.SetStatus("", status)
	for _, name := range serviceNames {
		s.health.SetStatus(name, status)
	}
}

// healthz is the liveness check: 200 whenever the process can answer.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}

// readyz is the readiness check: 200 once the registry is restored, the caller has not held
// traffic off (SetReady) and the state store answers (State.Ping, within readyPingTimeout:
// a host whose Redis is down is taken out of a load balancer's rotation, and put back when
// it returns); 503 otherwise, and while shutting down.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyPingTimeout)
	defer cancel()
	if err := s.eng.State().Ping(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: the state store does not answer: %v\n", err)
		return
	}
	fmt.Fprintln(w, "ready")
}

// readyPingTimeout bounds the state store's ping in a readiness check.
const readyPingTimeout = time.Second

// Serve serves on ln (HTTP/1.1 and unencrypted HTTP/2, so gRPC works without TLS) until ctx
// is done, then shuts down gracefully: it reports not ready, stops accepting, ends the
// streaming calls (Watch answers Unavailable), waits up to Config.ShutdownTimeout for
// in-flight calls, and closes the Server. It returns nil after a clean shutdown, and an
// error when ln fails or in-flight calls outlive the timeout (they are then cut off). Serve
// closes ln. A Server serves once: call Serve at most once, and not after Close.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("server: Serve called twice")
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           s.handler,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("listening", slog.String("addr", ln.Addr().String()),
		slog.String("protocols", "connect, grpc (h2c), grpc-web"))

	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("server: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", slog.Duration("timeout", s.shutdownTimeout))
	s.SetReady(false)
	s.Close() // ends streaming calls, so that only unary calls remain to drain
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("server: shutdown: in-flight calls did not finish within %v: %w", s.shutdownTimeout, err)
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("server: serve: %w", serr)
	}
	s.log.Info("stopped")
	return err
}

// Close ends the Server's streaming calls (Watch answers Unavailable) and its Notifier
// subscription, and stops its registry following a shared Store (registry.Registry.Close).
// Serve calls it; call it yourself when serving through Handler. Unary calls still in
// flight finish. Close does not close the Engine, Host, Notifier or Store. It is idempotent
// and always returns nil.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.watch != nil {
			s.watch.close()
		}
		s.closeStreams()
		s.reg.Close()
	})
	return nil
}

// recovered is the connect.WithRecover handler: it logs the panic with its stack and
// answers Internal without either.
func (s *Server) recovered(ctx context.Context, spec connect.Spec, _ http.Header, p any) error {
	s.log.LogAttrs(ctx, slog.LevelError, "panic in handler", slog.String("procedure", spec.Procedure),
		slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

// recoverHTTP recovers panics outside the RPC handlers (CORS, routing, /healthz,
// /readyz): it logs them and answers 500, so that one bad request never takes the process down.
func (s *Server) recoverHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler { // net/http aborts a response quietly with it
				panic(p)
			}
			s.log.LogAttrs(r.Context(), slog.LevelError, "panic serving HTTP", slog.String("path", r.URL.Path),
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			http.Error(w, "internal error", http.StatusInternalServerError)
		}()
		next.ServeHTTP(w, r)
	})
}

// fail converts an error for the client (see errors.go) and logs those that are the
// server's fault.
func (s *Server) fail(ctx context.Context, procedure string, err error, names fieldNames) error {
	ce := rpcError(err, names)
	if ce.Code() == connect.CodeInternal || ce.Code() == connect.CodeUnknown {
		s.log.LogAttrs(ctx, slog.LevelError, "call failed", slog.String("procedure", procedure), slog.Any("error", err))
	}
	return ce
}

// registryFail is fail for the registry's errors (registryError).
func (s *Server) registryFail(ctx context.Context, procedure string, err error, names fieldNames) error {
	ce := registryError(err, names)
	if ce.Code() == connect.CodeInternal || ce.Code() == connect.CodeUnknown {
		s.log.LogAttrs(ctx, slog.LevelError, "call failed", slog.String("procedure", procedure), slog.Any("error", err))
	}
	return ce
}

// logInterceptor logs each call at debug level: its procedure, protocol, the feature (or
// data source) it names, its code and its duration (as a duration: "1.2ms").
type logInterceptor struct{ log *slog.Logger }

func (l logInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if !l.log.Enabled(ctx, slog.LevelDebug) {
			return next(ctx, req)
		}
		start := time.Now()
		res, err := next(ctx, req)
		l.done(ctx, req.Spec().Procedure, req.Peer().Protocol, requestFeature(req.Any()), start, err)
		return res, err
	}
}

func (l logInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (l logInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if !l.log.Enabled(ctx, slog.LevelDebug) {
			return next(ctx, conn)
		}
		start := time.Now()
		err := next(ctx, conn)
		l.done(ctx, conn.Spec().Procedure, conn.Peer().Protocol, "", start, err)
		return err
	}
}

func (l logInterceptor) done(ctx context.Context, procedure, protocol, feature string, start time.Time, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	attrs := []slog.Attr{slog.String("procedure", procedure), slog.String("protocol", protocol)}
	if feature != "" {
		attrs = append(attrs, slog.String("feature", feature))
	}
	// A string, not slog.Duration: the JSON handler would print nanoseconds.
	attrs = append(attrs, slog.String("code", code), slog.String("duration", time.Since(start).String()))
	l.log.LogAttrs(ctx, slog.LevelDebug, "call", attrs...)
}

// requestFeature names what a request is about: its FQN, selector or data source, or its
// selectors joined with commas; "" for requests that name none (ListFeatures, …).
func requestFeature(msg any) string {
	switch m := msg.(type) {
	case interface{ GetSelectors() []string }:
		return strings.Join(m.GetSelectors(), ",")
	case interface{ GetSelector() string }:
		return m.GetSelector()
	case interface{ GetFqn() string }:
		return m.GetFqn()
	case interface{ GetSource() string }:
		return m.GetSource()
	}
	return ""
}
