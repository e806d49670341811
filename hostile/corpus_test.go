package hostile

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/host"
)

// role is how an entry's module is applied.
type role int

const (
	asProgram    role = iota // spec.builder.module of a feature
	asMiddleware             // a preSet middleware of a sourceless feature
	asUpload                 // bytes uploaded under a module name (that a feature names)
)

func (r role) String() string {
	return [...]string{"program", "middleware", "upload"}[r]
}

// callKind is what runs the module's code once it is applied.
type callKind int

const (
	noCall     callKind = iota // refused at apply: nothing to call
	callGet                    // Get of the feature, computed on request
	callIngest                 // Ingest of one row into hostile.rows, which feeds the feature
	callSet                    // Set of the feature, through its middleware
)

func (c callKind) String() string {
	return [...]string{"-", "Get", "Ingest", "Set"}[c]
}

// entry is one module of the corpus and what the host must do with it.
type entry struct {
	name  string // the feature is hostile.<name>; the module corpus/<name>.wat unless gen is set
	class string
	as    role
	gen   func() []byte // a generated module (generate_test.go)

	primitive   string // the feature's primitive (default int)
	timeout     string // spec.timeout (default 200ms)
	memoryLimit string // spec.builder.config.memoryLimit, or the middleware's config

	call  callKind // noCall: refused at apply
	calls int      // how many calls (default 1)

	// Expected: the apply (call == noCall) or each call ends with code (0: success, or alt
	// when set), with a message containing msg — and, for a call, naming the feature —
	// within the given time (callBound for a call, refusalBound for an apply, when 0).
	code   connect.Code
	alt    connect.Code
	msg    string
	within time.Duration

	concurrent bool                  // meanwhile a trivial apply of another feature succeeds promptly
	heapCalls  bool                  // host memory must not grow over the calls
	check      func(o outcome) error // more checks of a successful call
}

const (
	ok       connect.Code = 0
	deadline              = connect.CodeDeadlineExceeded
	invalid               = connect.CodeInvalidArgument
	internal              = connect.CodeInternal
	failed                = connect.CodeFailedPrecondition
)

const (
	refusalBound = 10 * time.Second            // an apply refused on its structure or checks
	initBound    = initTimeout + 5*time.Second // an apply refused because _initialize overran
	promptApply  = 5 * time.Second             // a trivial apply beside a hostile one
	corpusBudget = 150 * time.Second           // the whole corpus; entries past it fail unrun
)

// corpus is the hostile corpus. Refusals come first and entries that overrun their deadline
// last, so that a host that cannot stop one still yields the outcomes of the others before
// the watchdog ends the run.
var corpus = []entry{
	// Structure: refused at apply on structural limits, before compiling, fast, while other
	// applies go on.
	{name: "nested_blocks", class: "structure: 1 M nested blocks", gen: func() []byte { return nestedBlocks(1 << 20) },
		code: invalid, msg: "nested", concurrent: true},
	{name: "br_table", class: "structure: a br_table of 10 M targets", gen: func() []byte { return brTable(10_000_000) },
		code: invalid, msg: "limit", concurrent: true},
	{name: "br_table_1m", class: "structure: a br_table of 1 Mi targets (within the function size limit)", gen: func() []byte { return brTable(1 << 20) },
		code: invalid, msg: "br_table", concurrent: true},
	{name: "locals", class: "structure: 256 Mi locals declared in a tiny module", gen: func() []byte { return manyLocals(256 << 20) },
		code: invalid, msg: "locals", concurrent: true},
	{name: "not_wasm", class: "structure: a 30 MB upload that is not Wasm", as: asUpload, gen: func() []byte { return notWasm(30_000_000) },
		code: invalid, msg: "WebAssembly", concurrent: true},

	// ABI and import checks at apply.
	{name: "abi_version", class: "misc: wrong ABI version (2.0)", code: invalid, msg: "ABI version"},
	{name: "missing_program", class: "misc: missing export osprey_program", code: invalid, msg: "osprey_program"},
	{name: "missing_alloc", class: "misc: missing export osprey_alloc", code: invalid, msg: "osprey_alloc"},
	{name: "import_forbidden", class: "misc: forbidden import env.f", code: invalid, msg: "env.f"},
	{name: "import_global", class: "misc: a global imported from an unknown module (env.g)", code: invalid, msg: "env.g"},
	{name: "start", class: "misc: a start function (looping)", code: invalid, msg: "start function"},

	// Memory and tables.
	{name: "memory_initial_huge", class: "memory: initial memory of 4 GiB, beyond the ceiling", code: invalid, msg: "memory"},
	{name: "data_huge", class: "memory: a 24 MiB data segment (memory limit 16 MiB)", gen: func() []byte { return hugeData(24 << 20) },
		memoryLimit: "16Mi", code: invalid, msg: "data"},
	{name: "table_huge", class: "tables: a table declaring 2^27 entries", code: invalid, msg: "table"},
	{name: "memory_grow_bomb", class: "memory: memory.grow to the limit (16 MiB) and past it", memoryLimit: "16Mi", timeout: "10s",
		call: callGet, code: ok, check: func(o outcome) error {
			if p := o.value.GetIntValue(); p < 1 || p > 256 {
				return fmt.Errorf("the guest reached %d pages; the limit is 256 (16 MiB)", p)
			}
			return nil
		}},
	{name: "table_grow", class: "tables: table.grow by 2^26 entries on every call", call: callGet, calls: 3,
		code: ok, alt: internal, heapCalls: true, check: func(o outcome) error {
			if v := o.value.GetIntValue(); v != -1 {
				return fmt.Errorf("table.grow by 2^26 returned %d inside the guest, want -1 (refused)", v)
			}
			return nil
		}},

	// Traps, protocol errors and guest errors.
	{name: "unreachable", class: "misc: unreachable trap", call: callGet, code: internal, msg: "unreachable"},
	{name: "stack_overflow", class: "misc: stack overflow", timeout: "10s", call: callGet, code: internal, msg: "stack overflow"},
	{name: "hostcall_out_of_bounds", class: "misc: get_feature with a pointer outside memory", call: callGet, code: internal, msg: "outside"},
	{name: "hostcall_huge_length", class: "misc: get_feature with a 2 GiB length", call: callGet, code: internal, msg: "outside"},
	{name: "hostcall_log_huge_length", class: "misc: log with a 2 GiB length", call: callGet, code: internal, msg: "outside"},
	{name: "guest_error", class: "misc: the program returns an error status", call: callGet, code: failed, msg: "hostile guest error"},

	// Outputs and logs.
	{name: "response_45mib", class: "output: a 45 MiB response (ABI: 16 MiB at most)", primitive: "string", memoryLimit: "48Mi",
		call: callGet, code: internal, msg: "response"},
	{name: "log_flood", class: "output: 100 000 osprey.log calls", timeout: "10s", call: callIngest, code: ok,
		check: func(o outcome) error {
			if o.written != 1 {
				return fmt.Errorf("Ingest wrote %d values, want 1", o.written)
			}
			return nil
		}},
	{name: "stdout_flood", class: "output: 100 000 lines to stdout", timeout: "10s", call: callGet, code: ok},
	{name: "log_attrs", class: "output: log attributes level, msg, component, time; JSON lines in messages and stdout",
		call: callGet, code: ok},

	// _initialize that never ends: refused within the init timeout.
	{name: "init_loop", class: "stop: _initialize loops", code: invalid, msg: "_initialize", within: initBound},
	{name: "recursion_init", class: "stop: exponential recursion (d=60) in _initialize", code: invalid, msg: "_initialize", within: initBound},

	// Calls stopped at their deadline: loops, recursion, bulk memory, host calls.
	{name: "loop", class: "stop: infinite loop", call: callGet, code: deadline},
	{name: "alloc_loop", class: "stop: osprey_alloc loops", call: callGet, code: deadline},
	{name: "middleware_loop", class: "stop: a middleware loops", as: asMiddleware, call: callSet, code: deadline},
	{name: "hostcall_loop", class: "misc: get_feature in a loop", call: callGet, code: deadline},
	{name: "random_get", class: "work: random_get of 1 MiB per iteration", call: callIngest, code: deadline},
	{name: "fd_write_loop", class: "work: fd_write to stdout per iteration", call: callGet, code: deadline},
	{name: "poll_oneoff", class: "work: poll_oneoff of 100 000 subscriptions per iteration", call: callGet, code: deadline},
	{name: "memory_fill", class: "work: memory.fill of 32 MiB per iteration", call: callGet, code: deadline},
	{name: "memory_copy", class: "work: memory.copy of 32 MiB per iteration", call: callGet, code: deadline},
	{name: "recursion", class: "stop: exponential recursion (d=60), direct", call: callGet, code: deadline},
	{name: "recursion_indirect", class: "stop: exponential recursion (d=60) through call_indirect", call: callGet, code: deadline},
	{name: "recursion_mutual", class: "stop: exponential mutual recursion (d=60)", call: callGet, code: deadline},
}

// manifest is the feature an entry applies, naming its module <name>.wasm.
func (e entry) manifest(fqnName string) string {
	prim := e.primitive
	if prim == "" {
		prim = "int"
	}
	timeout := e.timeout
	if timeout == "" {
		timeout = "200ms"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: osprey.dev/v1alpha1\nkind: Feature\nmetadata: {name: %s, namespace: hostile}\n", fqnName)
	fmt.Fprintf(&b, "spec:\n  primitive: %s\n  freshness: 1m\n  staleness: 1h\n  timeout: %s\n  keys: [id]\n", prim, timeout)
	cfg := ""
	if e.memoryLimit != "" {
		cfg = fmt.Sprintf(", config: {memoryLimit: %s}", e.memoryLimit)
	}
	switch e.as {
	case asMiddleware:
		fmt.Fprintf(&b, "  middlewares:\n    - {name: %s, module: %s.wasm, stages: [preSet]%s}\n", fqnName, e.name, cfg)
	default:
		if e.call == callIngest {
			b.WriteString("  dataSource: hostile.rows\n")
		}
		fmt.Fprintf(&b, "  builder: {module: %s.wasm%s}\n", e.name, cfg)
	}
	return b.String()
}

func (e entry) module(t *testing.T) []byte {
	if e.gen != nil {
		return e.gen()
	}
	return wat(t, e.name)
}

// call makes one hostile call of the entry's feature.
func (en *env) call(e entry, fqn string) outcome {
	return en.callKeys(e, fqn, map[string]string{"id": "x"})
}

func (en *env) callKeys(e entry, fqn string, keys map[string]string) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), hangTimeout)
	defer cancel()
	start := time.Now()
	var o outcome
	switch e.call {
	case callGet:
		var res *connect.Response[ospreyv1.GetResponse]
		res, o.err = en.eng.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: fqn, Keys: keys}))
		if o.err == nil {
			o.value = res.Msg.GetValue()
		}
	case callIngest:
		row, _ := structpb.NewStruct(map[string]any{"id": keys["id"]})
		var res *connect.Response[ospreyv1.IngestResponse]
		res, o.err = en.ing.Ingest(ctx, connect.NewRequest(&ospreyv1.IngestRequest{Source: "hostile.rows", Rows: []*structpb.Struct{row}}))
		if o.err == nil {
			o.written = res.Msg.GetWritten()
		}
	case callSet:
		var res *connect.Response[ospreyv1.SetResponse]
		res, o.err = en.eng.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: fqn, Keys: keys, Value: structpb.NewNumberValue(1)}))
		if o.err == nil {
			o.value = res.Msg.GetValue()
		}
	}
	o.took = time.Since(start)
	o.hung = ctx.Err() != nil
	return o
}

// verdict checks an outcome against the entry's expectation and returns what is wrong.
func (e entry) verdict(o outcome, fqn string, isCall bool) []string {
	var bad []string
	within := e.within
	if within == 0 {
		within = refusalBound
		if isCall {
			within = callBound
		}
	}
	if o.hung {
		return []string{fmt.Sprintf("hung: the client gave up after %v (%v)", o.took.Round(time.Millisecond), errMessage(o.err))}
	}
	if o.took > within {
		bad = append(bad, fmt.Sprintf("took %v, more than %v", o.took.Round(time.Millisecond), within))
	}
	code := connect.CodeOf(o.err)
	if o.err == nil {
		code = ok
	}
	if code != e.code && (e.alt == 0 || code != e.alt) {
		want := codeName(e.code)
		if e.alt != 0 {
			want += " or " + codeName(e.alt)
		}
		return append(bad, fmt.Sprintf("got %s, want %s", o, want))
	}
	if o.err == nil {
		if e.check != nil {
			if err := e.check(o); err != nil {
				bad = append(bad, err.Error())
			}
		}
		return bad
	}
	msg := errMessage(o.err)
	// The substring must come from what the host says, not from the feature's or the
	// module's name (hostile.table_huge, table_huge.wasm) that the message also carries.
	hostSaid := strings.NewReplacer(fqn, "", e.name+".wasm", "").Replace(msg)
	if code == e.code && e.msg != "" && !strings.Contains(hostSaid, e.msg) {
		bad = append(bad, fmt.Sprintf("message %q does not mention %q", msg, e.msg))
	}
	if isCall && !strings.Contains(msg, fqn) {
		bad = append(bad, fmt.Sprintf("message %q does not name the feature %s", msg, fqn))
	}
	return bad
}

func codeName(c connect.Code) string {
	if c == ok {
		return "success"
	}
	return c.String()
}

// row is one line of the report.
type row struct {
	name, class, as, step string
	pass, ran             bool
	observed              string
	mem                   memSample
	stats                 host.Stats
	logLines              int
}

func TestHostileCorpus(t *testing.T) {
	en := startEnv(t)
	budget := time.Now().Add(corpusBudget)
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(budget) {
		budget = d.Add(-30 * time.Second)
	}
	base := en.baseline(t)
	baseStats := en.host.Stats()
	t.Logf("baseline: heap %s MiB, runtime total %s MiB, RSS %s MiB; host: %+v", mib(base.heap), mib(base.total), mib(base.rss), baseStats)

	var rows []row
	for i, e := range corpus {
		r := row{name: e.name, class: e.class, as: e.as.String(), step: "apply"}
		if e.call != noCall {
			r.step = e.call.String()
		}
		passed := t.Run(e.name, func(t *testing.T) {
			r.ran = true
			if time.Now().After(budget) {
				r.observed = "not run: the corpus ran out of time"
				t.Fatalf("not run: the corpus's %v budget is spent", corpusBudget)
			}
			en.runEntry(t, i, e, base, baseStats, &r)
		})
		if !r.ran { // not selected by -run
			continue
		}
		r.pass = passed
		rows = append(rows, r)
		t.Logf("%-24s %-4s %s", e.name, map[bool]string{true: "pass", false: "FAIL"}[passed], r.observed)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "hostile corpus: baseline heap %s MiB, runtime total %s MiB, RSS %s MiB; after each entry (feature deleted, GC forced):\n",
		mib(base.heap), mib(base.total), mib(base.rss))
	fmt.Fprintf(&b, "%-24s %-10s %-7s %-4s %9s %9s %9s %9s %6s  %s\n", "entry", "as", "step", "ok", "heap Δ", "total Δ", "RSS Δ", "mod/inst", "logs", "observed")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-24s %-10s %-7s %-4s %9s %9s %9s %9s %6d  %s\n", r.name, r.as, r.step, map[bool]string{true: "pass", false: "FAIL"}[r.pass],
			mibDelta(r.mem.heap, base.heap), mibDelta(r.mem.total, base.total), mibDelta(r.mem.rss, base.rss),
			fmt.Sprintf("%d/%d", r.stats.Modules, r.stats.Instances), r.logLines, r.observed)
	}
	b.WriteString("(Δ in MiB against the baseline; mod/inst: the host's compiled modules and live instances; logs: server log lines during the entry)")
	t.Log(b.String())
}

// baseline warms the server up — every memory limit the corpus uses has its runtime, the
// load has run — and measures memory.
func (en *env) baseline(t *testing.T) memSample {
	t.Helper()
	en.wd.entry("baseline")
	noop := wat(t, "noop")
	for i, lim := range []string{"", "16Mi", "48Mi"} {
		e := entry{name: "warmup", memoryLimit: lim, call: callGet}
		mod := withCustomSection(noop, "warmup", []byte{byte(i)})
		if err := en.apply(e.manifest("warmup"), map[string][]byte{"warmup.wasm": mod}); err != nil {
			t.Fatalf("warm-up apply: %v", err)
		}
		if o := en.call(e, "hostile.warmup"); o.err != nil {
			t.Fatalf("warm-up call: %v", o)
		}
		if err := en.remove("hostile.warmup"); err != nil {
			t.Fatalf("warm-up delete: %v", err)
		}
	}
	time.Sleep(time.Second)
	if n := en.load.failed.Load(); n > 0 {
		t.Fatalf("the healthy reads failed %d times before the corpus ran: %s", n, en.load.lastError())
	}
	return measure()
}

// runEntry applies one entry, makes its call, and checks the server afterwards.
func (en *env) runEntry(t *testing.T, i int, e entry, base memSample, baseStats host.Stats, r *row) {
	fqnName := e.name
	fqn := "hostile." + fqnName
	en.what.Store(e.name)
	en.wd.entry(e.name)
	en.logs.mark()
	failedBefore := en.load.failed.Load()
	en.load.maxLatency.Store(0)
	mod := e.module(t)
	var observed []string
	defer func() { r.observed = shorten(strings.Join(observed, "; ")) }()

	// Apply, beside a trivial apply when the entry asks for it.
	applied := make(chan outcome, 1)
	go func(mod []byte) {
		start := time.Now()
		err := en.apply(e.manifest(fqnName), map[string][]byte{e.name + ".wasm": mod})
		took := time.Since(start)
		applied <- outcome{err: err, took: took, hung: err != nil && took >= applyTimeout}
	}(mod)
	if e.concurrent {
		select {
		case <-time.After(100 * time.Millisecond):
		case o := <-applied:
			applied <- o
		}
		observed = append(observed, en.trivialApply(t, i))
	}
	var ao outcome
	select {
	case ao = <-applied:
	case <-time.After(applyTimeout + 5*time.Second):
		en.frozen("the apply did not return, even after its client timeout")
	}
	mod = nil
	if e.call == noCall {
		observed = append(observed, "apply: "+ao.String())
		if bad := e.verdict(ao, fqn, false); len(bad) > 0 {
			t.Errorf("apply: %s", strings.Join(bad, "; "))
		}
	} else if ao.err != nil {
		observed = append(observed, "apply: "+ao.String())
		t.Errorf("apply failed, want it applied: %v", ao)
	} else {
		// The hostile calls.
		calls := max(e.calls, 1)
		var before memSample
		if e.heapCalls {
			before = measure()
		}
		for n := range calls {
			// A key of its own per call: a value the program wrote is served while fresh,
			// without running the program again.
			o := en.callKeys(e, fqn, map[string]string{"id": fmt.Sprintf("x%d", n)})
			observed = append(observed, e.call.String()+": "+o.String())
			if bad := e.verdict(o, fqn, true); len(bad) > 0 {
				t.Errorf("%s %d: %s", e.call, n+1, strings.Join(bad, "; "))
			}
			if o.hung {
				break
			}
		}
		if e.heapCalls {
			after := measure()
			observed = append(observed, fmt.Sprintf("heap over the calls %s MiB", mibDelta(after.heap, before.heap)))
			if after.heap > before.heap+heapSlack {
				t.Errorf("host memory grew by %s MiB over the calls (heap %s → %s MiB)", mibDelta(after.heap, before.heap), mib(before.heap), mib(after.heap))
			}
		}
	}

	// (a) The server answers.
	en.checkHealth(t)
	// (b) The healthy reads kept succeeding.
	if n := en.load.failed.Load() - failedBefore; n > 0 {
		t.Errorf("%d healthy reads failed during the entry; the last: %s", n, en.load.lastError())
	}
	if m := time.Duration(en.load.maxLatency.Load()); m > readTimeout/2 {
		observed = append(observed, fmt.Sprintf("slowest healthy read %v", m.Round(time.Millisecond)))
	}
	// (d) Delete, then memory comes back.
	if err := en.remove(fqn); err != nil {
		t.Errorf("delete %s: %v", fqn, err)
	}
	stats, ok := en.released(baseStats)
	r.stats = stats
	if !ok {
		t.Errorf("the host still holds %d modules and %d module blobs (%d bytes) after the entry, against %d and %d before: it did not release them",
			stats.Modules, stats.Blobs, stats.BlobBytes, baseStats.Modules, baseStats.Blobs)
	}
	r.mem = measure()
	if r.mem.heap > base.heap+heapSlack {
		t.Errorf("heap %s MiB after the entry, %s MiB over the baseline (allowed %s)", mib(r.mem.heap), mibDelta(r.mem.heap, base.heap), mib(heapSlack))
	}
	if !raceEnabled && r.mem.rss > base.rss+rssSlack {
		t.Errorf("RSS %s MiB after the entry, %s MiB over the baseline (allowed %s)", mib(r.mem.rss), mibDelta(r.mem.rss, base.rss), mib(rssSlack))
	}
	// Logs: bounded, and nothing a guest wrote reads as the host's.
	lines, n := en.logs.window()
	r.logLines = n
	if n > maxLogLines {
		t.Errorf("the server logged %d lines during the entry (allowed %d): its log is not bounded", n, maxLogLines)
	}
	if s := spoofed(lines); s != "" {
		t.Errorf("a guest spoofed the server's log: %s", s)
	}
	if e.name == "log_attrs" {
		found := false
		for _, l := range lines {
			if strings.Contains(l, fqn) && strings.Contains(l, "spoof") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("the guest's log line (naming %s) is not in the server's log", fqn)
		}
	}
}

// trivialApply applies, reads and deletes a trivial program (a module never compiled before)
// while a hostile apply is in flight; it must succeed promptly.
func (en *env) trivialApply(t *testing.T, i int) string {
	t.Helper()
	name := fmt.Sprintf("trivial_%d", i)
	fqn := "hostile." + name
	e := entry{name: name, call: callGet, code: ok}
	mod := withCustomSection(wat(t, "noop"), "trivial", []byte(name))
	start := time.Now()
	err := en.apply(e.manifest(name), map[string][]byte{name + ".wasm": mod})
	took := time.Since(start)
	if err != nil {
		t.Errorf("a trivial apply beside the hostile one failed after %v: %v", took.Round(time.Millisecond), err)
		return fmt.Sprintf("trivial apply FAILED after %v", took.Round(time.Millisecond))
	}
	if took > promptApply {
		t.Errorf("a trivial apply beside the hostile one took %v (want < %v)", took.Round(time.Millisecond), promptApply)
	}
	if o := en.call(e, fqn); o.err != nil || o.value.GetIntValue() != 42 {
		t.Errorf("Get of the trivial feature: %v", o)
	}
	if err := en.remove(fqn); err != nil {
		t.Errorf("delete %s: %v", fqn, err)
	}
	return fmt.Sprintf("trivial apply beside it: %v", took.Round(time.Millisecond))
}

var digest = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// shorten makes an observation fit a line of the report.
func shorten(s string) string {
	s = digest.ReplaceAllString(s, "sha256:…")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}
