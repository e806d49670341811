package main

// osprey bench: a load generator for the EngineService read path. It drives Get and GetMany
// against a running host and, in the same run and with the same load, against a bare
// connect-go handler served from this process (the baseline), and reports the ratios.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

// The targets of the issue, as ratios to the baseline measured in the same run.
const (
	targetGetThroughput = 0.70 // Get throughput ≥ 70 % of the baseline's, closed loop
	targetGetLatency    = 1.5  // Get p50 and p99 ≤ 1.5× the baseline's, open loop
	targetManyP99       = 3.0  // GetMany p99 ≤ 3× the baseline's single-call Get p99, open loop
)

const (
	benchRounds       = 3                // each loop is split into this many alternating rounds
	benchGrace        = 10 * time.Second // how long a call may outlive its round
	benchInflightConn = 128              // open loop: most calls in flight, per connection
	benchMaxErrorRate = 0.01             // more errors than this fails the run
)

type benchOptions struct {
	addr        string
	token       string
	protocol    string
	selector    string
	keys        keysFlag
	concurrency int
	connections int
	duration    time.Duration
	warmup      time.Duration
	rate        float64 // requests/s of the open-loop phases; 0: half the lower closed-loop throughput
	many        int     // selectors per GetMany; 0: no GetMany phase
	scalar      string  // a scalar feature's selector: the windowed phase against it; "": none
	output      string
	setup       bool
	cpuProfile  string
	rounds      int
	process     bool   // serve the baseline from a child process instead of this one
	http1       bool   // HTTP/1.1 connections (one call at a time each) instead of HTTP/2
	redis       string // the baseline GETs the host's responses from this Redis (issue 10)
	ingest      ingestBenchOptions
}

func runBench(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o := benchOptions{rounds: benchRounds}
	var rate string
	fs.StringVar(&o.addr, "addr", envOr("OSPREY_ADDR", "http://127.0.0.1:8080"), "the host's address (env OSPREY_ADDR)")
	fs.StringVar(&o.token, "token", os.Getenv("OSPREY_TOKEN"), "bearer token (env OSPREY_TOKEN)")
	fs.StringVar(&o.protocol, "protocol", "connect", "protocol: connect, connect-json, grpc or grpcweb (all but connect-json: binary protobuf)")
	fs.BoolVar(&o.http1, "http1", false, "HTTP/1.1 connections, one call in flight on each (Connect only); with --connections 1 --concurrency 1, the one-connection closed loop")
	fs.StringVar(&o.selector, "selector", "fraud.amount+avg", "the feature Get reads")
	fs.Var(&o.keys, "keys", "the entity, KEY=VALUE (repeatable or comma-separated; default card_id=c1)")
	fs.IntVar(&o.concurrency, "concurrency", 8, "closed loop: calls in flight")
	fs.IntVar(&o.connections, "connections", 1, "HTTP/2 connections to spread the calls over")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each loop measures, per target (split into alternating rounds)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "closed-loop warm-up per target and call before measuring")
	fs.StringVar(&rate, "rate", "1000", "open loop: requests/s (e.g. 2000 or 2000/s; auto: half the lower closed-loop throughput)")
	fs.IntVar(&o.many, "many", 50, "GetMany phase: selectors per call (--selector repeated N times, one entity); 0 skips it")
	fs.StringVar(&o.scalar, "scalar", "", "a scalar feature (e.g. fraud.limit): a last loop compares --selector's windowed feature, read with each of its aggregations over a full window, with Gets of this one")
	fs.StringVar(&o.output, "output", "text", "output format: text or json")
	fs.BoolVar(&o.setup, "setup", true, "before measuring, Update the selector's feature with 1 for the entity (errors ignored)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (load generator and baseline) to this file")
	fs.BoolVar(&o.process, "baseline-process", false, "serve the baseline from a child process (this binary), like the host, instead of from this one (default true with --baseline-redis, false otherwise)")
	fs.StringVar(&o.redis, "baseline-redis", "", "HOST:PORT of a Redis: the baseline does one go-redis GET per call of a key holding the host's response bytes (issue 10's targets)")
	o.ingest.register(fs)
	listen := fs.String("baseline-listen", "", "serve only the baseline, with a copy of the host's Get response, on this address until interrupted: for an external load generator (wrk)")
	serve := fs.Bool("serve-baseline", false, "internal: serve a baseline with the constants read from standard input, print its address, stop at EOF")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: osprey bench [flags]

Load-tests a running host's Get and GetMany against a bare connect-go handler served from
this process on 127.0.0.1 (the baseline: it answers with a constant copy of the host's own
response, so both send the same bytes), with the same load, in the same run:

  1. Get, closed loop: --concurrency calls in flight; throughput and latency.
  2. Get, open loop: --rate requests/s, whatever the latency; latency percentiles.
  3. GetMany of --many selectors × 1 entity, open loop at the same rate, against the
     baseline's Get (and, for reference, its GetMany).
  4. Get and that GetMany in one open loop, in alternating blocks of 250 ms at the rate,
     so that the two latencies are measured under the same conditions.
  5. With --scalar: on the host only, Gets of --selector's windowed feature with each of
     its aggregations, in blocks alternating with Gets of the scalar feature. Before the
     first loop, --setup writes one value into each bucket of the entity's window (and
     sets the scalar), so that every read of the run merges a full window.

Each loop runs --duration per target, in rounds that alternate between the two. Prints the
ratios and the issue's targets (PASS/FAIL); exits 1 when a target fails or more than 1 %
of calls fail.

Open-loop latency counts from the call's due time when the in-flight cap held it back (so
a slow server's backlog is counted), else from its actual send: Go's timers wake up to
~1 ms late, which is the generator's noise. The from-due figures and the send lag are
printed too. --baseline-process serves the baseline from a child process instead, which,
like the host, then has to be woken across processes; the Redis baseline (--baseline-redis)
is served so unless --baseline-process=false.

Flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (run `osprey bench -h`)", fs.Arg(0))
	}
	if *serve {
		return serveBaseline(ctx, o.redis, e.stdin, e.stdout)
	}
	var err error
	if o.rate, err = parseRate(rate); err != nil {
		return err
	}
	if o.redis != "" && !flagSet(fs, "baseline-process") {
		o.process = true // the Redis baseline is a service of its own, as the host is
	}
	if len(o.keys) == 0 {
		o.keys = keysFlag{"card_id": "c1"}
	}
	if err := o.validate(); err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *listen != "" {
		return listenBaseline(ctx, &o, *listen, e.stderr)
	}
	if o.ingest.file != "" {
		return runIngestBench(ctx, &o, e.stdout, e.stderr)
	}
	rep, err := bench(ctx, &o, e.stderr)
	if err != nil {
		return err
	}
	if o.output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.writeText(e.stdout)
	}
	if err := rep.err(); err != nil {
		return err
	}
	return rep.failedTargets()
}

func (o *benchOptions) validate() error {
	switch {
	case o.output != "text" && o.output != "json":
		return fmt.Errorf("--output %q: want text or json", o.output)
	case o.concurrency < 1:
		return errors.New("--concurrency: want at least 1")
	case o.connections < 1:
		return errors.New("--connections: want at least 1")
	case o.duration <= 0:
		return errors.New("--duration: want a positive duration")
	case o.warmup < 0:
		return errors.New("--warmup: want a duration ≥ 0")
	case o.many < 0 || o.many > 1000:
		return errors.New("--many: want 0 to 1000")
	case o.selector == "":
		return errors.New("--selector: want a feature selector")
	case o.scalar != "" && selectorFQN(o.scalar) == selectorFQN(o.selector):
		return fmt.Errorf("--scalar %s: want a scalar feature, not --selector's own", o.scalar)
	case o.rounds < 1:
		return errors.New("rounds: want at least 1")
	case o.http1 && o.protocol != "connect" && o.protocol != "connect-json":
		return fmt.Errorf("--http1: gRPC needs HTTP/2; want --protocol connect or connect-json, not %s", o.protocol)
	}
	if _, err := benchProtocol(o.protocol); err != nil {
		return err
	}
	return nil
}

// parseRate reads "2000", "2000/s" or "auto" (0).
func parseRate(s string) (float64, error) {
	if s == "auto" || s == "0" {
		return 0, nil
	}
	r, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "/s"), 64)
	if err != nil || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		return 0, fmt.Errorf("--rate %q: want requests per second, e.g. 2000 or 2000/s, or auto", s)
	}
	return r, nil
}

// keysFlag is an entity: KEY=VALUE, repeatable or comma-separated.
type keysFlag map[string]string

func (k keysFlag) String() string {
	var parts []string
	for name, v := range k {
		parts = append(parts, name+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (k *keysFlag) Set(s string) error {
	if *k == nil {
		*k = keysFlag{}
	}
	for part := range strings.SplitSeq(s, ",") {
		name, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" {
			return fmt.Errorf("%q: want KEY=VALUE", part)
		}
		(*k)[name] = v
	}
	return nil
}

func benchProtocol(p string) (connect.ClientOption, error) {
	switch p {
	case "connect":
		return nil, nil
	case "connect-json":
		return connect.WithProtoJSON(), nil
	case "grpc":
		return connect.WithGRPC(), nil
	case "grpcweb", "grpc-web":
		return connect.WithGRPCWeb(), nil
	}
	return nil, fmt.Errorf("--protocol %q: want connect, connect-json, grpc or grpcweb", p)
}

// benchTarget is a server under load: one client (and one HTTP/2 connection) per
// --connections.
type benchTarget struct {
	name       string
	clients    []ospreyv1connect.EngineServiceClient
	transports []*http.Transport
}

func newBenchTarget(name, addr string, o *benchOptions) (*benchTarget, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	var opts []connect.ClientOption
	popt, err := benchProtocol(o.protocol)
	if err != nil {
		return nil, err
	}
	if popt != nil {
		opts = append(opts, popt)
	}
	if o.token != "" {
		opts = append(opts, connect.WithInterceptors(bearer(o.token)))
	}
	t := &benchTarget{name: name}
	for range o.connections {
		// HTTP/2 with prior knowledge only: with HTTP/1 enabled too, http:// would be
		// HTTP/1.1. Each transport holds one connection, which multiplexes every call.
		var protocols http.Protocols
		tr := &http.Transport{Protocols: &protocols}
		if o.http1 {
			// One HTTP/1.1 connection: a call at a time, as wrk or a keep-alive client sends.
			protocols.SetHTTP1(true)
			tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = 1, 1
		} else {
			protocols.SetUnencryptedHTTP2(true)
		}
		t.transports = append(t.transports, tr)
		t.clients = append(t.clients, ospreyv1connect.NewEngineServiceClient(&http.Client{Transport: tr}, addr, opts...))
	}
	return t, nil
}

func (t *benchTarget) close() {
	for _, tr := range t.transports {
		tr.CloseIdleConnections()
	}
}

// benchCall is one call of a loop.
type benchCall func(ctx context.Context, c ospreyv1connect.EngineServiceClient) error

func getCall(req *ospreyv1.GetRequest) benchCall {
	return func(ctx context.Context, c ospreyv1connect.EngineServiceClient) error {
		_, err := c.Get(ctx, connect.NewRequest(req))
		return err
	}
}

func getManyCall(req *ospreyv1.GetManyRequest) benchCall {
	return func(ctx context.Context, c ospreyv1connect.EngineServiceClient) error {
		_, err := c.GetMany(ctx, connect.NewRequest(req))
		return err
	}
}

// constEngine is the baseline: a bare connect-go EngineService that answers Get and
// GetMany with constants (copies of the host's responses).
type constEngine struct {
	ospreyv1connect.UnimplementedEngineServiceHandler
	get  *ospreyv1.GetResponse
	many *ospreyv1.GetManyResponse
}

func (c *constEngine) Get(context.Context, *connect.Request[ospreyv1.GetRequest]) (*connect.Response[ospreyv1.GetResponse], error) {
	return connect.NewResponse(c.get), nil
}

func (c *constEngine) GetMany(context.Context, *connect.Request[ospreyv1.GetManyRequest]) (*connect.Response[ospreyv1.GetManyResponse], error) {
	if c.many == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("no GetMany constant"))
	}
	return connect.NewResponse(c.many), nil
}

// startBaseline serves c on 127.0.0.1 (HTTP/1.1 and h2c) and returns its address and a
// stop function.
func startBaseline(c *constEngine) (string, func(), error) { return startBaselineAt(c, "127.0.0.1:0") }

// listenBaseline serves the baseline alone on addr, answering Get with a copy of the host's
// response, until ctx ends.
func listenBaseline(ctx context.Context, o *benchOptions, addr string, log io.Writer) error {
	target, err := newBenchTarget("osprey", o.addr, o)
	if err != nil {
		return err
	}
	defer target.close()
	callCtx, cancel := context.WithTimeout(ctx, benchGrace)
	defer cancel()
	res, err := target.clients[0].Get(callCtx, connect.NewRequest(&ospreyv1.GetRequest{Selector: o.selector, Keys: o.keys}))
	if err != nil {
		return fmt.Errorf("Get %s from %s: %w", o.selector, o.addr, serverError(err))
	}
	base, stop, err := startBaselineAt(&constEngine{get: res.Msg}, addr)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintf(log, "bench: baseline serving %s's Get %s response on %s until interrupted\n", o.addr, o.selector, base)
	<-ctx.Done()
	return nil
}

// startBaselineAt serves c on addr.
func startBaselineAt(c ospreyv1connect.EngineServiceHandler, addr string) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(ospreyv1connect.NewEngineServiceHandler(c))
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: protocols, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}

// spawnBaseline serves c from a child process, `osprey bench --serve-baseline`, which reads
// the constants from its standard input and prints its address; it stops when its standard
// input closes. With redis (HOST:PORT) the child serves the Redis baseline
// (startRedisBaseline) instead of answering the constants from memory.
func spawnBaseline(c *constEngine, redis string, stderr io.Writer) (string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	args := []string{"-log-level", "error", "bench", "--serve-baseline"}
	if redis != "" {
		args = append(args, "--baseline-redis", redis)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	var frames []byte
	for _, m := range []proto.Message{c.get, c.many} {
		var b []byte
		if m.ProtoReflect().IsValid() { // a nil *GetManyResponse is not
			if b, err = proto.Marshal(m); err != nil {
				stop()
				return "", nil, err
			}
		}
		frames = binary.BigEndian.AppendUint32(frames, uint32(len(b)))
		frames = append(frames, b...)
	}
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
	}()
	if _, err := in.Write(frames); err != nil {
		stop()
		return "", nil, fmt.Errorf("baseline process: %w", err)
	}
	select {
	case a := <-addr:
		if !strings.HasPrefix(a, "http://127.0.0.1:") {
			stop()
			return "", nil, fmt.Errorf("baseline process: no address (%q)", a)
		}
		return a, stop, nil
	case <-time.After(10 * time.Second):
		stop()
		return "", nil, errors.New("baseline process: no address after 10s")
	}
}

// serveBaseline is the child of spawnBaseline; redis, when set, is the Redis of the
// Redis baseline.
func serveBaseline(ctx context.Context, redis string, in io.Reader, out io.Writer) error {
	c := &constEngine{get: &ospreyv1.GetResponse{}}
	for i, m := range []proto.Message{c.get, &ospreyv1.GetManyResponse{}} {
		var n [4]byte
		if _, err := io.ReadFull(in, n[:]); err != nil {
			return fmt.Errorf("reading the constants: %w", err)
		}
		b := make([]byte, binary.BigEndian.Uint32(n[:]))
		if _, err := io.ReadFull(in, b); err != nil {
			return fmt.Errorf("reading the constants: %w", err)
		}
		if err := proto.Unmarshal(b, m); err != nil {
			return err
		}
		if i == 1 && len(b) > 0 {
			c.many = m.(*ospreyv1.GetManyResponse)
		}
	}
	start := startBaseline
	if redis != "" {
		start = func(c *constEngine) (string, func(), error) { return startRedisBaseline(ctx, c, redis) }
	}
	addr, stop, err := start(c)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Fprintln(out, addr)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, in); close(eof) }()
	select {
	case <-eof:
	case <-ctx.Done():
	}
	return nil
}

// selectorFQN strips a selector's +aggr, @-version and [encoding].
func selectorFQN(sel string) string {
	if i := strings.IndexAny(sel, "+@["); i >= 0 {
		return sel[:i]
	}
	return sel
}

// bench runs the phases and returns their report; progress goes to log.
func bench(ctx context.Context, o *benchOptions, log io.Writer) (*benchReport, error) {
	began := time.Now()
	target, err := newBenchTarget("osprey", o.addr, o)
	if err != nil {
		return nil, err
	}
	defer target.close()
	keys := map[string]string(o.keys)
	rep := &benchReport{Addr: o.addr, BaselineProcess: o.process, BaselineRedis: o.redis, Protocol: o.protocol, Selector: o.selector, Keys: keys,
		Concurrency: o.concurrency, Connections: o.connections, Many: o.many, Rounds: o.rounds,
		DurationMS: ms(o.duration), WarmupMS: ms(o.warmup)}

	// The real responses, which the baseline then serves as constants.
	callCtx, cancel := context.WithTimeout(ctx, benchGrace)
	defer cancel()
	c0 := target.clients[0]
	if o.setup {
		_, err := c0.Update(callCtx, connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: selectorFQN(o.selector),
			Keys: keys, Value: structpb.NewNumberValue(1)}))
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("setup: Update %s: %v (ignored)", selectorFQN(o.selector), serverError(err)))
		}
	}
	var win *benchWindow // the windowed phase's plan, its window filled
	if o.scalar != "" {
		if win, err = prepareWindow(ctx, c0, o); err != nil {
			return nil, err
		}
	}
	getReq := &ospreyv1.GetRequest{Selector: o.selector, Keys: keys}
	getRes, err := c0.Get(callCtx, connect.NewRequest(getReq))
	if err != nil {
		return nil, fmt.Errorf("Get %s from %s: %w", o.selector, o.addr, serverError(err))
	}
	konst := &constEngine{get: proto.Clone(getRes.Msg).(*ospreyv1.GetResponse)}
	rep.GetResponseBytes = proto.Size(konst.get)
	rep.Found = konst.get.GetFound()
	if !rep.Found {
		rep.Notes = append(rep.Notes, fmt.Sprintf("Get %s found no value: both sides serve the not-found response", o.selector))
	}
	var manyReq *ospreyv1.GetManyRequest
	if o.many > 0 {
		manyReq = &ospreyv1.GetManyRequest{Selectors: slices.Repeat([]string{o.selector}, o.many),
			Entities: []*ospreyv1.Entity{{Keys: keys}}}
		manyRes, err := c0.GetMany(callCtx, connect.NewRequest(manyReq))
		if err != nil {
			return nil, fmt.Errorf("GetMany %d×1 from %s: %w", o.many, o.addr, serverError(err))
		}
		konst.many = proto.Clone(manyRes.Msg).(*ospreyv1.GetManyResponse)
		rep.GetManyResponseBytes = proto.Size(konst.many)
		for _, r := range konst.many.GetResults() {
			for _, f := range r.GetFeatures() {
				if f.GetError() != "" {
					rep.Notes = append(rep.Notes, "GetMany cell error: "+f.GetError())
					break
				}
			}
		}
	}
	cancel()

	start := startBaseline
	switch {
	case o.process:
		start = func(c *constEngine) (string, func(), error) { return spawnBaseline(c, o.redis, log) }
	case o.redis != "":
		start = func(c *constEngine) (string, func(), error) { return startRedisBaseline(ctx, c, o.redis) }
	}
	baseAddr, stop, err := start(konst)
	if err != nil {
		return nil, err
	}
	defer stop()
	baseline, err := newBenchTarget("baseline", baseAddr, o)
	if err != nil {
		return nil, err
	}
	defer baseline.close()
	pair := [2]*benchTarget{baseline, target}
	get := getCall(getReq)

	progress := func(format string, args ...any) { fmt.Fprintf(log, "bench: "+format+"\n", args...) }
	progress("%s: Get %s %s (%d B response); baseline %s", o.addr, o.selector, o.keys.String(), rep.GetResponseBytes, baseAddr)
	if o.warmup > 0 {
		progress("warming up (%v per target)", o.warmup)
		for _, t := range pair {
			closedLoop(ctx, t, get, o.concurrency, o.warmup)
		}
	}
	round := (o.duration / time.Duration(o.rounds)).Round(time.Millisecond)

	// 1. Get, closed loop.
	progress("Get, closed loop, concurrency %d: %d rounds of %v per target", o.concurrency, o.rounds, round)
	closed := rounds(ctx, o.rounds, pair, func(t *benchTarget) *runResult {
		return closedLoop(ctx, t, get, o.concurrency, round)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Phases = append(rep.Phases, closed.phase("Get", "closed", o.concurrency, 0))

	// 2. Get, open loop.
	rate := o.rate
	if rate == 0 {
		rate = math.Max(1, math.Round(math.Min(closed[0].throughput(), closed[1].throughput())/200)*100)
		rep.RateAuto = true
	}
	rep.Rate = rate
	progress("Get, open loop, %g/s: %d rounds of %v per target", rate, o.rounds, round)
	open := rounds(ctx, o.rounds, pair, func(t *benchTarget) *runResult {
		return openLoop(ctx, t, get, rate, round, benchInflightConn*o.connections)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Phases = append(rep.Phases, open.phase("Get", "open", 0, rate))

	// 3. GetMany, open loop.
	var many runPair
	var mixed [2]runPair // phase 4: the Gets, then the GetManys
	if o.many > 0 {
		gm := getManyCall(manyReq)
		if o.warmup > 0 {
			for _, t := range pair {
				closedLoop(ctx, t, gm, o.concurrency, o.warmup/2)
			}
		}
		progress("GetMany %d×1, open loop, %g/s: %d rounds of %v per target", o.many, rate, o.rounds, round)
		many = rounds(ctx, o.rounds, pair, func(t *benchTarget) *runResult {
			return openLoop(ctx, t, gm, rate, round, benchInflightConn*o.connections)
		})
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.Phases = append(rep.Phases, many.phase(fmt.Sprintf("GetMany %d×1", o.many), "open", 0, rate))

		// 4. Get and GetMany in alternating blocks of one open loop: the two p99s under
		// the same conditions (phases 2 and 3 run a minute apart on a machine whose tail
		// moves), and neither behind the other's calls.
		progress("Get and GetMany %d×1 in blocks of %v, open loop, %g/s: %d rounds of %v per target and call", o.many, benchBlock, rate, o.rounds, round)
		mixed = [2]runPair{{newRunResult(), newRunResult()}, {newRunResult(), newRunResult()}}
		rounds(ctx, o.rounds, pair, func(t *benchTarget) *runResult {
			i := slices.Index(pair[:], t)
			got := openLoopBlocks(ctx, t, []benchCall{get, gm}, rate, round, benchInflightConn*o.connections)
			mixed[0][i].merge(got[0])
			mixed[1][i].merge(got[1])
			return got[0]
		})
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.Phases = append(rep.Phases, mixed[0].phase("Get, in blocks with GetMany", "open", 0, rate),
			mixed[1].phase(fmt.Sprintf("GetMany %d×1, in blocks with Get", o.many), "open", 0, rate))
	}

	// 5. A windowed Get against a scalar one, on the host.
	var window *benchVerdict
	if win != nil {
		progress("windowed %s against scalar %s, in blocks of %v, open loop, %g/s", win.fqn, o.scalar, benchBlock, rate)
		phase, v, note := windowPhase(ctx, target, o, win, rate)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.Phases = append(rep.Phases, phase)
		rep.Notes = append(rep.Notes, note)
		window = &v
	}

	// The verdicts.
	if o.redis != "" {
		rep.Targets = redisTargets(o, closed, open, many, mixed, rate)
	} else {
		rep.Targets = baselineTargets(o, closed, open, many, rate)
	}
	if window != nil {
		rep.Targets = append(rep.Targets, *window)
	}
	rep.TotalSeconds = time.Since(began).Seconds()
	return rep, nil
}

// baselineTargets are issue 4's verdicts: the host against a bare connect-go handler.
func baselineTargets(o *benchOptions, closed, open, many runPair, rate float64) []benchVerdict {
	var v []benchVerdict
	b, t := closed[0], closed[1]
	v = append(v, verdict(
		fmt.Sprintf("Get throughput ≥ %.0f %% of baseline (closed loop, concurrency %d)", 100*targetGetThroughput, o.concurrency),
		t.throughput()/b.throughput(), targetGetThroughput, true))
	b, t = open[0], open[1]
	v = append(v,
		verdict(fmt.Sprintf("Get p50 ≤ %g× baseline (open loop, %g/s)", targetGetLatency, rate),
			float64(t.lat.quantile(0.5))/float64(b.lat.quantile(0.5)), targetGetLatency, false),
		verdict(fmt.Sprintf("Get p99 ≤ %g× baseline (open loop, %g/s)", targetGetLatency, rate),
			float64(t.lat.quantile(0.99))/float64(b.lat.quantile(0.99)), targetGetLatency, false))
	if o.many > 0 {
		v = append(v, verdict(
			fmt.Sprintf("GetMany %d×1 p99 ≤ %g× baseline Get p99 (open loop, %g/s)", o.many, targetManyP99, rate),
			float64(many[1].lat.quantile(0.99))/float64(b.lat.quantile(0.99)), targetManyP99, false))
	}
	return v
}

// rounds runs f for the baseline and the target, n times, alternating which goes first,
// and merges each one's rounds.
func rounds(ctx context.Context, n int, pair [2]*benchTarget, f func(*benchTarget) *runResult) runPair {
	out := runPair{newRunResult(), newRunResult()}
	for r := range n {
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			if ctx.Err() != nil {
				return out
			}
			out[i].merge(f(pair[i]))
		}
	}
	return out
}

// runPair is a loop's results: the baseline's, then the target's.
type runPair [2]*runResult

// runResult is what one or more rounds of a loop measured.
type runResult struct {
	calls, errors atomic.Int64
	elapsed       time.Duration    // sum over the rounds
	roundRates    []float64        // completed calls/s of each round
	lat           *histogram       // latency: closed loop from the send, open loop see openLoop
	intended      *histogram       // open loop: latency from the intended send time
	lag           *histogram       // open loop: how late each call was sent
	late          atomic.Int64     // open loop: calls held back by the in-flight cap
	errMu         sync.Mutex       //
	firstErr      error            //
	errCodes      map[string]int64 //
}

func newRunResult() *runResult {
	return &runResult{lat: newHistogram(), intended: newHistogram(), lag: newHistogram(), errCodes: map[string]int64{}}
}

func (r *runResult) fail(err error) {
	r.errors.Add(1)
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if r.firstErr == nil {
		r.firstErr = err
	}
	r.errCodes[connect.CodeOf(err).String()]++
}

func (r *runResult) merge(o *runResult) {
	r.calls.Add(o.calls.Load())
	r.errors.Add(o.errors.Load())
	r.late.Add(o.late.Load())
	r.elapsed += o.elapsed
	r.roundRates = append(r.roundRates, o.roundRates...)
	r.lat.merge(o.lat)
	r.intended.merge(o.intended)
	r.lag.merge(o.lag)
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
	for c, n := range o.errCodes {
		r.errCodes[c] += n
	}
}

// throughput is the median of the rounds' rates of successful calls.
func (r *runResult) throughput() float64 {
	if len(r.roundRates) == 0 {
		return 0
	}
	s := slices.Clone(r.roundRates)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// closedLoop keeps n calls in flight for d: each worker sends its next call when the last
// one returns. Latency is from send to response.
func closedLoop(ctx context.Context, t *benchTarget, call benchCall, n int, d time.Duration) *runResult {
	res := newRunResult()
	start := time.Now()
	end := start.Add(d)
	cctx, cancel := context.WithDeadline(ctx, end.Add(benchGrace))
	defer cancel()
	var wg sync.WaitGroup
	for w := range n {
		c := t.clients[w%len(t.clients)]
		wg.Go(func() {
			for {
				sent := time.Now()
				if !sent.Before(end) || cctx.Err() != nil {
					return
				}
				err := call(cctx, c)
				res.lat.record(time.Since(sent))
				if err != nil {
					res.fail(err)
				} else {
					res.calls.Add(1)
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.roundRates = []float64{float64(res.calls.Load()) / res.elapsed.Seconds()}
	return res
}

// openLoop sends rate calls/s for d whatever the latency (up to inflight calls in flight):
// call i is due at start + i/rate.
//
// Latency is measured from the due time when a call is sent late because every worker was
// busy (the backlog of a slow server is counted: no coordinated omission), and from the
// actual send otherwise: the Go runtime's timers wake up to ~1 ms late on Linux (epoll's
// millisecond timeout), which is the load generator's noise, not the server's. Both
// measures are kept: lat (the one reported) and intended (from the due time, always).
func openLoop(ctx context.Context, t *benchTarget, call benchCall, rate float64, d time.Duration, inflight int) *runResult {
	res := newRunResult()
	interval := time.Duration(float64(time.Second) / rate)
	total := max(int64(d/interval), 1)
	start := time.Now().Add(5 * time.Millisecond) // let the workers start
	cctx, cancel := context.WithDeadline(ctx, start.Add(d+benchGrace))
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range int(min(int64(inflight), total)) {
		c := t.clients[w%len(t.clients)]
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for {
				i := next.Add(1) - 1
				if i >= total || cctx.Err() != nil {
					return
				}
				due := start.Add(time.Duration(i) * interval)
				sent := time.Now()
				if wait := due.Sub(sent); wait > 0 {
					timer.Reset(wait)
					select {
					case <-timer.C:
					case <-cctx.Done():
						return
					}
					sent = time.Now()
				} else {
					res.late.Add(1)
					sent = due
				}
				res.lag.record(time.Since(due))
				err := call(cctx, c)
				done := time.Now()
				res.lat.record(done.Sub(sent))
				res.intended.record(done.Sub(due))
				if err != nil {
					res.fail(err)
				} else {
					res.calls.Add(1)
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.roundRates = []float64{float64(res.calls.Load()) / d.Seconds()}
	return res
}

// benchBlock is how long each block of openLoopBlocks lasts.
const benchBlock = 250 * time.Millisecond

// openLoopBlocks runs openLoop for each call in turn, a block of benchBlock at a time and
// each at the full rate, until each has run for d, and returns each call's results. The
// calls share the machine's conditions (they alternate four times a second, where loops
// run one after the other are seconds or minutes apart on a machine whose tail moves) but
// never each other's: a block ends when its last call has returned, so no call of one is
// in flight during the other's block. See RATIONALE.md, "Latencies compared in blocks".
func openLoopBlocks(ctx context.Context, t *benchTarget, calls []benchCall, rate float64, d time.Duration, inflight int) []*runResult {
	out := make([]*runResult, len(calls))
	for i := range out {
		out[i] = newRunResult()
	}
	for ran := time.Duration(0); ran < d && ctx.Err() == nil; ran += benchBlock {
		block := min(benchBlock, d-ran)
		for i, call := range calls {
			out[i].merge(openLoop(ctx, t, call, rate, block, inflight))
		}
	}
	return out
}

// histogram is a log-linear histogram of durations (HDR-style): exact below 256 ns, then
// 128 buckets per power of two (under 0.8 % error), up to 2^40 ns (18 minutes), in a fixed
// 34 KiB. It is safe for concurrent use.
type histogram struct {
	counts   [histBuckets]atomic.Uint64
	n        atomic.Uint64
	sum, max atomic.Int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histMaxBits = 40
	histBuckets = (histMaxBits-histSubBits)*histSub + 2*histSub
)

func newHistogram() *histogram { return new(histogram) }

func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	e := max(bits.Len64(uint64(v))-(histSubBits+1), 0)
	return e*histSub + int(v>>e)
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	e := i>>histSubBits - 1
	m := int64(i - e*histSub)
	return m<<e + int64(1)<<e/2
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	h.counts[histIndex(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

func (h *histogram) merge(o *histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	for {
		m, v := h.max.Load(), o.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// quantile returns the q-quantile (0 < q ≤ 1); 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := max(uint64(math.Ceil(q*float64(n))), 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(histValue(i), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

func (h *histogram) mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / int64(n))
}

// The report.

type benchReport struct {
	Addr                 string            `json:"addr"`
	Protocol             string            `json:"protocol"`
	BaselineProcess      bool              `json:"baseline_process"`
	BaselineRedis        string            `json:"baseline_redis,omitempty"`
	Selector             string            `json:"selector"`
	Keys                 map[string]string `json:"keys"`
	Found                bool              `json:"found"`
	GetResponseBytes     int               `json:"get_response_bytes"`
	GetManyResponseBytes int               `json:"get_many_response_bytes,omitempty"`
	Concurrency          int               `json:"concurrency"`
	Connections          int               `json:"connections"`
	Rate                 float64           `json:"rate"`
	RateAuto             bool              `json:"rate_auto,omitempty"`
	Many                 int               `json:"many"`
	Rounds               int               `json:"rounds"`
	DurationMS           float64           `json:"duration_ms"`
	WarmupMS             float64           `json:"warmup_ms"`
	Phases               []benchPhase      `json:"phases"`
	Targets              []benchVerdict    `json:"targets"`
	Notes                []string          `json:"notes,omitempty"`
	TotalSeconds         float64           `json:"total_seconds"`
}

type benchPhase struct {
	Call        string     `json:"call"`
	Loop        string     `json:"loop"` // closed or open
	Concurrency int        `json:"concurrency,omitempty"`
	Rate        float64    `json:"rate,omitempty"`
	Baseline    benchStats `json:"baseline"`
	Osprey      benchStats `json:"osprey"`
	// Sides names the two columns when they are not the baseline and the host: the
	// windowed phase's scalar and windowed Gets, both on the host.
	Sides []string `json:"sides,omitempty"`
}

// sides returns the names of p's two columns and of their ratio.
func (p benchPhase) sides() (string, string, string) {
	if len(p.Sides) == 2 {
		return p.Sides[0], p.Sides[1], p.Sides[1] + "/" + p.Sides[0]
	}
	return "baseline", "osprey", "osprey/baseline"
}

type benchStats struct {
	Calls      int64            `json:"calls"`
	Errors     int64            `json:"errors"`
	ErrorCodes map[string]int64 `json:"error_codes,omitempty"`
	FirstError string           `json:"first_error,omitempty"`
	Throughput float64          `json:"throughput"` // median over the rounds, calls/s
	RoundRates []float64        `json:"round_rates"`
	MeanUS     float64          `json:"mean_us"`
	P50US      float64          `json:"p50_us"`
	P99US      float64          `json:"p99_us"`
	P999US     float64          `json:"p999_us"`
	MaxUS      float64          `json:"max_us"`
	// Open loop only.
	FromDueP50US float64 `json:"from_due_p50_us,omitempty"` // latency from the due time
	FromDueP99US float64 `json:"from_due_p99_us,omitempty"`
	LagP50US     float64 `json:"send_lag_p50_us,omitempty"` // send time − due time
	LagP99US     float64 `json:"send_lag_p99_us,omitempty"`
	Late         int64   `json:"late,omitempty"` // sent late: the in-flight cap was reached
}

type benchVerdict struct {
	Target  string  `json:"target"`
	Ratio   float64 `json:"ratio"`
	Limit   float64 `json:"limit"`
	Pass    bool    `json:"pass"`
	AtLeast bool    `json:"at_least"` // the ratio must be at least the limit, not at most
	// Reference marks a ratio printed for comparison, not a target: Pass is not counted.
	Reference bool `json:"reference,omitempty"`
}

func verdict(target string, ratio, limit float64, atLeast bool) benchVerdict {
	pass := ratio <= limit
	if atLeast {
		pass = ratio >= limit
	}
	if math.IsNaN(ratio) || math.IsInf(ratio, 0) {
		pass = false
	}
	return benchVerdict{Target: target, Ratio: ratio, Limit: limit, Pass: pass, AtLeast: atLeast}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r *runResult) stats(open bool) benchStats {
	s := benchStats{Calls: r.calls.Load(), Errors: r.errors.Load(), Throughput: r.throughput(), RoundRates: r.roundRates,
		MeanUS: us(r.lat.mean()), P50US: us(r.lat.quantile(0.5)), P99US: us(r.lat.quantile(0.99)),
		P999US: us(r.lat.quantile(0.999)), MaxUS: us(time.Duration(r.lat.max.Load()))}
	if len(r.errCodes) > 0 {
		s.ErrorCodes = r.errCodes
	}
	if r.firstErr != nil {
		s.FirstError = serverError(r.firstErr).Error()
	}
	if open {
		s.FromDueP50US, s.FromDueP99US = us(r.intended.quantile(0.5)), us(r.intended.quantile(0.99))
		s.LagP50US, s.LagP99US = us(r.lag.quantile(0.5)), us(r.lag.quantile(0.99))
		s.Late = r.late.Load()
	}
	return s
}

func (rs runPair) phase(call, loop string, concurrency int, rate float64) benchPhase {
	open := loop == "open"
	return benchPhase{Call: call, Loop: loop, Concurrency: concurrency, Rate: rate,
		Baseline: rs[0].stats(open), Osprey: rs[1].stats(open)}
}

// err fails the run when more than 1 % of any loop's calls failed.
func (r *benchReport) err() error {
	for _, p := range r.Phases {
		first, second, _ := p.sides()
		for _, s := range []struct {
			name string
			st   benchStats
		}{{first, p.Baseline}, {second, p.Osprey}} {
			total := s.st.Calls + s.st.Errors
			if total > 0 && float64(s.st.Errors)/float64(total) > benchMaxErrorRate {
				return fmt.Errorf("%s %s loop, %s: %d of %d calls failed; the first: %s",
					p.Call, p.Loop, s.name, s.st.Errors, total, s.st.FirstError)
			}
		}
	}
	return nil
}

// failedTargets fails the run when a target (a verdict) failed, naming those that did.
func (r *benchReport) failedTargets() error {
	var failed []string
	targets := 0
	for _, v := range r.Targets {
		if v.Reference {
			continue
		}
		targets++
		if !v.Pass {
			failed = append(failed, v.Target)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d targets failed: %s", len(failed), targets, strings.Join(failed, "; "))
	}
	return nil
}

func fmtDur(v float64) string { // v in µs
	switch {
	case v == 0:
		return "-"
	case v < 1000:
		return fmt.Sprintf("%.0fµs", v)
	case v < 10_000:
		return fmt.Sprintf("%.2fms", v/1000)
	default:
		return fmt.Sprintf("%.1fms", v/1000)
	}
}

func fmtRatio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func (r *benchReport) writeText(w io.Writer) {
	codec := "binary protobuf"
	if r.Protocol == "connect-json" {
		codec = "JSON"
	}
	fmt.Fprintf(w, "osprey bench %s (%s, %s, %d connection(s))\n", r.Addr, r.Protocol, codec, r.Connections)
	fmt.Fprintf(w, "Get %s %s: %d B response (found=%v)", r.Selector, keysFlag(r.Keys).String(), r.GetResponseBytes, r.Found)
	if r.Many > 0 {
		fmt.Fprintf(w, "; GetMany %d×1: %d B response", r.Many, r.GetManyResponseBytes)
	}
	where := "in this process"
	if r.BaselineProcess {
		where = "in a child process"
	}
	if r.BaselineRedis != "" {
		fmt.Fprintf(w, "\nbaseline: a bare connect-go handler %s doing one go-redis GET per call (Redis %s) of a copy of the same response\n", where, r.BaselineRedis)
	} else {
		fmt.Fprintf(w, "\nbaseline: a bare connect-go handler %s answering a copy of the same response\n", where)
	}
	fmt.Fprintf(w, "each loop: %d rounds × %v per target, alternating; warm-up %v\n\n",
		r.Rounds, (time.Duration(r.DurationMS*float64(time.Millisecond)) / time.Duration(r.Rounds)).Round(time.Millisecond),
		time.Duration(r.WarmupMS*float64(time.Millisecond)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\tserver\t  calls/s\t     p50\t     p99\t   p99.9\t     max\terrors")
	for _, p := range r.Phases {
		name := fmt.Sprintf("%s closed c=%d", p.Call, p.Concurrency)
		if p.Loop == "open" {
			name = fmt.Sprintf("%s open %g/s", p.Call, p.Rate)
		}
		first, second, ratio := p.sides()
		for _, s := range []struct {
			who string
			st  benchStats
		}{{first, p.Baseline}, {second, p.Osprey}} {
			fmt.Fprintf(tw, "%s\t%s\t%9.0f\t%8s\t%8s\t%8s\t%8s\t%6d\n", name, s.who, s.st.Throughput,
				fmtDur(s.st.P50US), fmtDur(s.st.P99US), fmtDur(s.st.P999US), fmtDur(s.st.MaxUS), s.st.Errors)
			name = ""
		}
		fmt.Fprintf(tw, "\t%s\t%9s\t%8s\t%8s\t%8s\t\t\n", ratio, fmtRatio(p.Osprey.Throughput, p.Baseline.Throughput),
			fmtRatio(p.Osprey.P50US, p.Baseline.P50US), fmtRatio(p.Osprey.P99US, p.Baseline.P99US),
			fmtRatio(p.Osprey.P999US, p.Baseline.P999US))
	}
	tw.Flush()

	var open []benchPhase
	for _, p := range r.Phases {
		if p.Loop == "open" {
			open = append(open, p)
		}
	}
	if len(open) > 0 {
		fmt.Fprintln(w, "\nopen loop: latency from the due send time, and how late the sends left (the generator's timers);")
		fmt.Fprintln(w, "the table above counts from the actual send unless the in-flight cap held a call back")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "phase\tserver\tp50 from due\tp99 from due\tsend lag p50\tsend lag p99\theld back")
		for _, p := range open {
			name := fmt.Sprintf("%s open %g/s", p.Call, p.Rate)
			first, second, _ := p.sides()
			for _, s := range []struct {
				who string
				st  benchStats
			}{{first, p.Baseline}, {second, p.Osprey}} {
				fmt.Fprintf(tw, "%s\t%s\t%12s\t%12s\t%12s\t%12s\t%9d\n", name, s.who, fmtDur(s.st.FromDueP50US), fmtDur(s.st.FromDueP99US),
					fmtDur(s.st.LagP50US), fmtDur(s.st.LagP99US), s.st.Late)
				name = ""
			}
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\ntargets (ratios to the baseline in this run)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range r.Targets {
		verdict := "FAIL"
		switch {
		case v.Reference:
			verdict = "(reference)"
		case v.Pass:
			verdict = "PASS"
		}
		value := fmt.Sprintf("%.2f×", v.Ratio)
		if v.AtLeast {
			value = fmt.Sprintf("%.0f %%", 100*v.Ratio)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Target, value, verdict)
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	fmt.Fprintf(w, "\ntotal %.1fs\n", r.TotalSeconds)
}
