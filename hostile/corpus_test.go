package hostile

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

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

	// Extism plugins (see pluginManifest): the module is the Plugin hostile.<name>'s, and
	// a feature hostile.<name>_feature names its function fn, in the same request.
	asPlugin           // the Plugin alone (its function declared a middleware): refused at apply
	asPluginMiddleware // a middleware of a sourceless feature: preSet for callSet, preGet for callGet
	asPluginEncoder    // the encoder of the selector hostile.<name>_feature[hostile.<name>]
	asPluginConnector  // the connector (spec.builder.plugin) of an on-request feature
)

func (r role) String() string {
	return [...]string{"program", "middleware", "upload", "plugin", "plugin-mw", "plugin-enc", "plugin-conn"}[r]
}

// isPlugin reports whether the role is an Extism plugin's.
func (r role) isPlugin() bool { return r >= asPlugin }

// callKind is what runs the module's code once it is applied.
type callKind int

const (
	noCall     callKind = iota // refused at apply: nothing to call
	callGet                    // Get of the feature, computed on request
	callIngest                 // Ingest of one row into hostile.rows, which feeds the feature
	callSet                    // Set of the feature, through its middleware
	callEncode                 // Set of the feature, then Get of it through the plugin's encoding
)

func (c callKind) String() string {
	return [...]string{"-", "Get", "Ingest", "Set", "Get[enc]"}[c]
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

	call     callKind // noCall: refused at apply
	calls    int      // how many calls (default 1)
	parallel int      // how many of each call run at once (default 1), each with keys of its own

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

	// An Extism plugin's (the roles asPlugin…; pluginManifest).
	wat    string                     // its module is corpus/<wat>.wat (default: <name>.wat)
	fn     string                     // the function it declares, and the feature names
	limits string                     // spec.limits, a flow mapping's content ("timeout: 300ms")
	hosts  string                     // spec.allowedHosts, a flow sequence's content
	config string                     // spec.config, a flow mapping's content; see env.expand
	logged func(lines []string) error // checks of the server's log lines during the entry
	value  func() *structpb.Value     // what callSet and callEncode set (default 1)
}

const (
	ok        connect.Code = 0
	deadline               = connect.CodeDeadlineExceeded
	invalid                = connect.CodeInvalidArgument
	internal               = connect.CodeInternal
	failed                 = connect.CodeFailedPrecondition
	exhausted              = connect.CodeResourceExhausted
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

	// Extism plugins refused at apply: their structure, imports, memory, exports, policy.
	{name: "plugin_not_wasm", class: "plugin structure: 1 MiB of text as a plugin's module", as: asPlugin, fn: "f",
		gen: func() []byte { return notWasm(1 << 20) }, code: invalid, alt: failed, msg: "spec.module", concurrent: true},
	{name: "plugin_not_wasm_magic", class: "plugin structure: the Wasm magic and version, then 1 MiB of text", as: asPlugin, fn: "f",
		gen: func() []byte { return append([]byte("\x00asm\x01\x00\x00\x00"), notWasm(1<<20)...) }, code: invalid, alt: failed, msg: "spec.module"},
	{name: "plugin_nested_blocks", class: "plugin structure: 1 M nested blocks (generated, as nested_blocks)", as: asPlugin, fn: "osprey_abi_version",
		gen: func() []byte { return nestedBlocks(1 << 20) }, code: invalid, msg: "nested", concurrent: true},
	{name: "plugin_locals", class: "plugin structure: 256 Mi locals (generated, as locals)", as: asPlugin, fn: "osprey_abi_version",
		gen: func() []byte { return manyLocals(256 << 20) }, code: invalid, msg: "locals"},
	{name: "plugin_table_huge", class: "plugin tables: a table of 2^27 entries (corpus/table_huge.wat)", as: asPlugin, wat: "table_huge",
		fn: "osprey_abi_version", code: invalid, alt: exhausted, msg: "table"},
	{name: "plugin_memory_initial_huge", class: "plugin memory: 4 GiB initial (corpus/memory_initial_huge.wat)", as: asPlugin,
		wat: "memory_initial_huge", fn: "osprey_abi_version", code: invalid, alt: exhausted, msg: "memory"},
	{name: "plugin_data_huge", class: "plugin memory: a 2 MiB data segment (generated, as data_huge), memoryPages 16", as: asPlugin,
		fn: "osprey_abi_version", gen: func() []byte { return hugeData(2 << 20) }, limits: "memoryPages: 16", code: invalid, alt: exhausted, msg: "data"},
	{name: "plugin_bigmem", class: "plugin memory: 60 000 pages declared, memoryPages 16", as: asPlugin, fn: "noop", limits: "memoryPages: 16",
		code: exhausted, alt: invalid, msg: "memory"},
	{name: "plugin_user_import", class: "plugin misc: imports extism:host/user steal", as: asPlugin, fn: "noop", code: invalid, alt: failed, msg: "extism:host/user"},
	{name: "plugin_missing_function", class: "plugin misc: declares a function it does not export", as: asPlugin, wat: "plugin_loop", fn: "nosuch",
		code: failed, msg: `"nosuch"`},
	{name: "plugin_http_policy", class: "plugin policy: declares api.example.com, not among the hosts allowed", as: asPlugin, wat: "plugin_http", fn: "fetch",
		hosts: "api.example.com", code: failed, msg: "spec.allowedHosts[0]"},
	{name: "plugin_limits_policy", class: "plugin policy: a 1m timeout, over the policy's 10s", as: asPlugin, wat: "plugin_loop", fn: "loop",
		limits: "timeout: 1m", code: failed, msg: "spec.limits.timeout"},
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

	{name: "plugin_memory_grow", class: "plugin memory: memory.grow past memoryPages 64, on every call", as: asPluginConnector, fn: "grow",
		limits: "memoryPages: 64", call: callGet, calls: 3, heapCalls: true, code: ok, check: func(o outcome) error {
			if p := o.value.GetIntValue(); p < 1 || p > 64 {
				return fmt.Errorf("the plugin reached %d pages; the limit is 64", p)
			}
			return nil
		}},
	{name: "plugin_kernel_alloc", class: "plugin memory: 1 MiB kernel blocks until alloc fails, memoryPages 64", as: asPluginConnector, fn: "alloc_all",
		limits: "memoryPages: 64", call: callGet, calls: 3, heapCalls: true, code: ok, alt: exhausted, check: func(o outcome) error {
			if n := o.value.GetIntValue(); n > 4 {
				return fmt.Errorf("the kernel gave the plugin %d blocks of 1 MiB; its memory is capped at 64 pages (4 MiB)", n)
			}
			return nil
		}},
	{name: "plugin_var_flood", class: "plugin memory: var_set of 4 KiB values without end", as: asPluginConnector, fn: "vars",
		call: callGet, calls: 3, heapCalls: true, code: exhausted, msg: "var_set"},
	{name: "plugin_input_huge", class: "plugin memory: a 3 MiB value to encode, memoryPages 32 (2 MiB)", as: asPluginEncoder, wat: "plugin_unreachable",
		fn: "trap", limits: "memoryPages: 32", primitive: "string", timeout: "5s", call: callEncode,
		value: func() *structpb.Value { return structpb.NewStringValue(strings.Repeat("i", 3<<20)) }, code: exhausted, msg: "input"},

	// Traps, protocol errors and guest errors.
	{name: "unreachable", class: "misc: unreachable trap", call: callGet, code: internal, msg: "unreachable"},
	{name: "stack_overflow", class: "misc: stack overflow", timeout: "10s", call: callGet, code: internal, msg: "stack overflow"},
	{name: "hostcall_out_of_bounds", class: "misc: get_feature with a pointer outside memory", call: callGet, code: internal, msg: "outside"},
	{name: "hostcall_huge_length", class: "misc: get_feature with a 2 GiB length", call: callGet, code: internal, msg: "outside"},
	{name: "hostcall_log_huge_length", class: "misc: log with a 2 GiB length", call: callGet, code: internal, msg: "outside"},
	{name: "guest_error", class: "misc: the program returns an error status", call: callGet, code: failed, msg: "hostile guest error"},
	// The plugin's own timeout (1s by default) is raised too: under the race detector on a
	// loaded machine, running out of stack has taken 1.8s.
	{name: "plugin_recursion", class: "plugin misc: unbounded recursion (a connector)", as: asPluginConnector, fn: "recurse",
		limits: "timeout: 5s", timeout: "5s", call: callGet, calls: 2, code: internal, msg: "stack overflow"},
	{name: "plugin_unreachable", class: "plugin misc: unreachable trap (an encoder)", as: asPluginEncoder, fn: "trap",
		call: callEncode, code: internal, msg: "unreachable"},
	{name: "plugin_proc_exit", class: "plugin misc: WASI proc_exit(3) in a call", as: asPluginConnector, fn: "quit",
		call: callGet, calls: 2, code: failed, msg: "exited with code 3"},
	{name: "plugin_error_spoof", class: "plugin misc: an error message holding a fake JSON log line", as: asPluginMiddleware, fn: "reject",
		call: callSet, code: failed, msg: "spoofed-rejection"},
	{name: "plugin_error_spoof_trap", class: "plugin misc: the same message, then a trap (logged at ERROR)", as: asPluginConnector,
		wat: "plugin_error_spoof", fn: "reject_trap", call: callGet, code: internal, msg: "spoofed-rejection"},
	{name: "plugin_http_undeclared", class: "plugin http: a request to a host it did not declare (none)", as: asPluginConnector,
		wat: "plugin_http", fn: "fetch", config: `request: '{"url":"$API/leak"}'`, call: callGet, code: failed, msg: "not allowed"},
	{name: "plugin_http_other_host", class: "plugin http: declares 127.0.0.1, asks localhost", as: asPluginConnector,
		wat: "plugin_http", fn: "fetch", hosts: "127.0.0.1", config: `request: '{"url":"http://localhost:$PORT/leak"}'`,
		call: callGet, code: failed, msg: "not allowed"},
	{name: "plugin_http_redirect", class: "plugin http: a redirect from its declared host to another", as: asPluginConnector,
		wat: "plugin_http", fn: "fetch", hosts: "127.0.0.1", config: `request: '{"url":"$API/redirect"}'`,
		call: callGet, code: failed, msg: "not allowed"},
	{name: "plugin_http_huge", class: "plugin http: a 64 MiB response, httpResponseBytes 64 KiB", as: asPluginConnector,
		wat: "plugin_http", fn: "fetch", hosts: "127.0.0.1", config: `request: '{"url":"$API/huge"}'`, limits: "httpResponseBytes: 65536",
		timeout: "5s", call: callGet, calls: 2, heapCalls: true, code: exhausted, msg: "httpResponseBytes"},
	{name: "plugin_http_headers", class: "plugin http: a response with 2 MiB of headers", as: asPluginConnector,
		wat: "plugin_http", fn: "fetch", hosts: "127.0.0.1", config: `request: '{"url":"$API/headers"}'`,
		timeout: "5s", call: callGet, code: exhausted, msg: "headers are larger than"},

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
	{name: "plugin_huge_output", class: "plugin output: an 8 MiB output (outputBytes 1 MiB)", as: asPluginConnector, fn: "huge",
		call: callGet, calls: 2, heapCalls: true, code: exhausted, msg: "output"},
	{name: "plugin_json_depth", class: "plugin output: {\"value\": and 1 000 000 '['", as: asPluginConnector, fn: "bomb",
		timeout: "5s", call: callGet, calls: 2, heapCalls: true, code: failed, msg: "value"},
	{name: "plugin_huge_output_4g", class: "plugin output: a 4 GiB - 1 output block", as: asPluginConnector, wat: "plugin_huge_output", fn: "huge_4g",
		call: callGet, code: failed, alt: exhausted, msg: "returned 2"},
	{name: "plugin_log_flood", class: "plugin output: 8 001 Extism log lines, control characters, fake JSON lines", as: asPluginMiddleware,
		fn: "flood", limits: "timeout: 10s", timeout: "10s", call: callSet, code: ok, logged: pluginLogsBounded("hostile.plugin_log_flood")},

	// _initialize that never ends: refused within the init timeout.
	{name: "init_loop", class: "stop: _initialize loops", code: invalid, msg: "_initialize", within: initBound},
	{name: "recursion_init", class: "stop: exponential recursion (d=60) in _initialize", code: invalid, msg: "_initialize", within: initBound},
	{name: "plugin_start_loop", class: "plugin stop: a start function that never ends (timeout 1s)", as: asPlugin, fn: "noop", limits: "timeout: 1s",
		code: deadline, msg: "timeout", concurrent: true},
	{name: "plugin_init_loop", class: "plugin stop: _initialize never ends (timeout 300ms)", as: asPlugin, fn: "noop", limits: "timeout: 300ms",
		code: deadline, msg: "timeout"},

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

	// Plugin calls stopped at their deadline: the plugin's timeout (300ms, shorter than the
	// feature's 5s) or the feature's (200ms, shorter than the plugin's default 1s).
	{name: "plugin_loop_preset", class: "plugin stop: a preSet middleware loops (plugin timeout 300ms)", as: asPluginMiddleware, wat: "plugin_loop", fn: "loop",
		limits: "timeout: 300ms", timeout: "5s", call: callSet, calls: 3, code: deadline},
	{name: "plugin_loop_preget", class: "plugin stop: a preGet middleware loops (plugin timeout 300ms)", as: asPluginMiddleware, wat: "plugin_loop", fn: "loop",
		limits: "timeout: 300ms", timeout: "5s", call: callGet, calls: 2, code: deadline},
	{name: "plugin_loop_encoder", class: "plugin stop: an encoder loops (plugin timeout 300ms)", as: asPluginEncoder, wat: "plugin_loop", fn: "loop",
		limits: "timeout: 300ms", timeout: "5s", call: callEncode, calls: 2, code: deadline},
	{name: "plugin_loop_connector", class: "plugin stop: a connector loops (feature timeout 200ms)", as: asPluginConnector, wat: "plugin_loop", fn: "loop",
		call: callGet, calls: 3, code: deadline},
	{name: "plugin_loop_flood", class: "plugin stop: 32 Gets at once of a looping connector (16 instances)", as: asPluginConnector, wat: "plugin_loop",
		fn: "loop", limits: "timeout: 300ms", timeout: "5s", call: callGet, calls: 2, parallel: 32, code: deadline},
	{name: "plugin_hostcall_loop", class: "plugin stop: alloc and free in a loop (a connector)", as: asPluginConnector, fn: "spin",
		limits: "timeout: 300ms", timeout: "5s", call: callGet, calls: 2, code: deadline},
	{name: "plugin_memory_grow_loop", class: "plugin stop: memory.grow without end, memoryPages 64", as: asPluginConnector, wat: "plugin_memory_grow",
		fn: "grow_forever", limits: "memoryPages: 64, timeout: 300ms", timeout: "5s", call: callGet, calls: 2, heapCalls: true, code: deadline},
	{name: "plugin_sleep", class: "plugin stop: poll_oneoff asked to sleep 1 h (plugin timeout 500ms)", as: asPluginConnector, fn: "nap",
		limits: "timeout: 500ms", timeout: "5s", call: callGet, code: ok, alt: deadline},
	{name: "plugin_http_drip", class: "plugin stop: an HTTP body dripping a byte every 50ms (plugin timeout 500ms)", as: asPluginConnector,
		wat: "plugin_http", fn: "fetch", hosts: "127.0.0.1", config: `request: '{"url":"$API/drip"}'`, limits: "timeout: 500ms", timeout: "5s",
		call: callGet, calls: 2, code: deadline},
	{name: "plugin_http_slow", class: "plugin stop: an HTTP request that is never answered (plugin timeout 500ms)", as: asPluginConnector,
		wat: "plugin_http", fn: "fetch", hosts: "127.0.0.1", config: `request: '{"url":"$API/slow"}'`, limits: "timeout: 500ms", timeout: "5s",
		call: callGet, calls: 2, code: deadline},
}

// pluginLogsBounded checks the server's log lines during a plugin's log flood: some of the
// plugin's lines are there (plugin=fqn, spoofs included, so the check sees them), a bounded
// number of them (the host rate-limits them), each cut near 1 KiB and with no control
// character left in it.
func pluginLogsBounded(fqn string) func(lines []string) error {
	return func(lines []string) error {
		var n, spoof int
		for _, l := range lines {
			var rec struct {
				Plugin string `json:"plugin"`
				Line   string `json:"line"`
			}
			if json.Unmarshal([]byte(l), &rec) != nil || rec.Plugin != fqn {
				continue
			}
			n++
			if len(rec.Line) > 1100 {
				return fmt.Errorf("a line of the plugin's of %d bytes: not cut at 1 KiB: %.200s", len(rec.Line), l)
			}
			if i := strings.IndexFunc(rec.Line, unicode.IsControl); i >= 0 {
				return fmt.Errorf("a line of the plugin's holds the control character %q: %.300s", rec.Line[i], l)
			}
			if strings.Contains(rec.Line, "spoofed-plugin-line") {
				spoof++
			}
		}
		switch {
		case n == 0:
			return fmt.Errorf("no line of the plugin's (plugin=%s) is in the server's log", fqn)
		case spoof == 0:
			return fmt.Errorf("the plugin's lines holding its fake JSON lines are not in the server's log")
		case n > 200:
			return fmt.Errorf("%d lines of the plugin's in one call: its lines are not rate-limited", n)
		}
		return nil
	}
}

// featureName is the name of the feature an entry applies (in namespace hostile): the
// entry's name, or, for a plugin, <name>_feature, so that an error naming the feature is
// told apart from one naming the plugin.
func (e entry) featureName() string {
	if e.as.isPlugin() {
		return e.name + "_feature"
	}
	return e.name
}

// pluginFQN is the FQN of an entry's plugin.
func (e entry) pluginFQN() string { return "hostile." + e.name }

// pluginManifest is the Plugin an entry applies, its module <name>.wasm, declaring its
// function fn in the role the feature uses it in.
func (e entry) pluginManifest() string {
	role := "middleware"
	switch e.as {
	case asPluginEncoder:
		role = "encoder"
	case asPluginConnector:
		role = "connector"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: osprey.dev/v1alpha1\nkind: Plugin\nmetadata: {name: %s, namespace: hostile}\n", e.name)
	fmt.Fprintf(&b, "spec:\n  module: %s.wasm\n  functions: [{name: %s, role: %s}]\n", e.name, e.fn, role)
	if e.limits != "" {
		fmt.Fprintf(&b, "  limits: {%s}\n", e.limits)
	}
	if e.hosts != "" {
		fmt.Fprintf(&b, "  allowedHosts: [%s]\n", e.hosts)
	}
	if e.config != "" {
		fmt.Fprintf(&b, "  config: {%s}\n", e.config)
	}
	return b.String()
}

// manifest is what an entry applies: the feature fqnName naming its module <name>.wasm;
// for a plugin, the Plugin and the feature naming its function (or the Plugin alone).
func (e entry) manifest(fqnName string) string {
	if e.as == asPlugin {
		return e.pluginManifest()
	}
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
	case asPluginMiddleware:
		stage := "preGet"
		if e.call == callSet {
			stage = "preSet"
		}
		fmt.Fprintf(&b, "  middlewares:\n    - {plugin: %s, function: %s, stages: [%s]}\n", e.pluginFQN(), e.fn, stage)
	case asPluginEncoder: // sourceless: the value is set, then read through the encoding
	case asPluginConnector:
		fmt.Fprintf(&b, "  builder: {plugin: %s, function: %s}\n", e.pluginFQN(), e.fn)
	default:
		if e.call == callIngest {
			b.WriteString("  dataSource: hostile.rows\n")
		}
		fmt.Fprintf(&b, "  builder: {module: %s.wasm%s}\n", e.name, cfg)
	}
	if e.as.isPlugin() {
		return e.pluginManifest() + "---\n" + b.String()
	}
	return b.String()
}

func (e entry) module(t *testing.T) []byte {
	if e.gen != nil {
		return e.gen()
	}
	if e.wat != "" {
		return wat(t, e.wat)
	}
	return wat(t, e.name)
}

// callParallel makes call n of an entry: e.parallel calls at once (one by default), each
// with keys of its own.
func (en *env) callParallel(e entry, fqn string, n int) []outcome {
	k := max(e.parallel, 1)
	outs := make([]outcome, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Go(func() {
			id := fmt.Sprintf("x%d", n)
			if k > 1 {
				id = fmt.Sprintf("x%d-%d", n, i)
			}
			outs[i] = en.callKeys(e, fqn, map[string]string{"id": id})
		})
	}
	wg.Wait()
	return outs
}

func slowest(outs []outcome) time.Duration {
	var d time.Duration
	for _, o := range outs {
		d = max(d, o.took)
	}
	return d
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
	value := structpb.NewNumberValue(1)
	if e.value != nil {
		value = e.value()
	}
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
		res, o.err = en.eng.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: fqn, Keys: keys, Value: value}))
		if o.err == nil {
			o.value = res.Msg.GetValue()
		}
	case callEncode:
		_, o.err = en.eng.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: fqn, Keys: keys, Value: value}))
		if o.err != nil {
			o.err = fmt.Errorf("the Set before the encoded read: %w", o.err)
			break
		}
		var res *connect.Response[ospreyv1.GetResponse]
		res, o.err = en.eng.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: fqn + "[" + e.pluginFQN() + "]", Keys: keys}))
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
	// For a plugin, neither from the plugin's name (hostile.plugin_loop, a prefix of
	// hostile.plugin_loop_feature: replaced after it).
	hostSaid := strings.NewReplacer(fqn, "", e.name+".wasm", "", e.pluginFQN(), "").Replace(msg)
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
	t.Logf("baseline: heap %s MiB, runtime total %s MiB, RSS %s MiB, compiled code %s MiB; host: %+v", mib(base.heap), mib(base.total), mib(base.rss), mib(base.exec), baseStats)

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
		t.Logf("%-26s %-4s %s", e.name, map[bool]string{true: "pass", false: "FAIL"}[passed], r.observed)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "hostile corpus: baseline heap %s MiB, runtime total %s MiB, RSS %s MiB, compiled code %s MiB; after each entry (feature and plugin deleted, GC forced):\n",
		mib(base.heap), mib(base.total), mib(base.rss), mib(base.exec))
	fmt.Fprintf(&b, "%-26s %-11s %-8s %-4s %9s %9s %9s %9s %9s %6s  %s\n", "entry", "as", "step", "ok", "heap Δ", "total Δ", "RSS Δ", "code Δ", "mod/inst", "logs", "observed")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-26s %-11s %-8s %-4s %9s %9s %9s %9s %9s %6d  %s\n", r.name, r.as, r.step, map[bool]string{true: "pass", false: "FAIL"}[r.pass],
			mibDelta(r.mem.heap, base.heap), mibDelta(r.mem.total, base.total), mibDelta(r.mem.rss, base.rss), mibDelta(r.mem.exec, base.exec),
			fmt.Sprintf("%d/%d", r.stats.Modules, r.stats.Instances), r.logLines, r.observed)
	}
	b.WriteString("(Δ in MiB against the baseline; code: the machine code wazero mapped, the host's and the plugins'; mod/inst: the host's compiled modules and live instances; logs: server log lines during the entry)")
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
	// And a plugin: its runtime, its kernel, its encoder and connector paths.
	e := entry{name: "warmup_plugin", as: asPluginConnector, wat: "plugin_churn", fn: "value", config: "v: 42", call: callGet}
	if err := en.apply(e.manifest(e.featureName()), map[string][]byte{e.name + ".wasm": wat(t, e.wat)}); err != nil {
		t.Fatalf("warm-up apply of a plugin: %v", err)
	}
	if o := en.call(e, "hostile."+e.featureName()); o.err != nil || o.value.GetIntValue() != 42 {
		t.Fatalf("warm-up call of a plugin: %v", o)
	}
	for _, fqn := range []string{"hostile." + e.featureName(), e.pluginFQN()} {
		if err := en.remove(fqn); err != nil {
			t.Fatalf("warm-up delete of %s: %v", fqn, err)
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
	fqnName := e.featureName()
	fqn := "hostile." + fqnName
	en.what.Store(e.name)
	en.wd.entry(e.name)
	en.logs.mark()
	failedBefore := en.load.failed.Load()
	leakedBefore := en.api.leaked.Load()
	en.load.maxLatency.Store(0)
	mod := e.module(t)
	var observed []string
	defer func() { r.observed = shorten(strings.Join(observed, "; ")) }()

	// Apply, beside a trivial apply when the entry asks for it.
	applied := make(chan outcome, 1)
	go func(mod []byte) {
		start := time.Now()
		err := en.apply(en.expand(e.manifest(fqnName)), map[string][]byte{e.name + ".wasm": mod})
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
		what := fqn
		if e.as.isPlugin() {
			what = e.pluginFQN()
		}
		if bad := e.verdict(ao, what, false); len(bad) > 0 {
			t.Errorf("apply: %s", strings.Join(bad, "; "))
		}
	} else if ao.err != nil {
		observed = append(observed, "apply: "+ao.String())
		t.Errorf("apply failed, want it applied: %v", ao)
	} else {
		// The hostile calls.
		calls := max(e.calls, 1)
		var before, afterFirst memSample
		if e.heapCalls {
			before = measure()
		}
		for n := range calls {
			// A key of its own per call: a value the program wrote is served while fresh,
			// without running the program again.
			outs := en.callParallel(e, fqn, n)
			hung := false
			for k, o := range outs {
				bad := e.verdict(o, fqn, true)
				if k == 0 || len(bad) > 0 { // of calls at once, the first and those that fail
					observed = append(observed, e.call.String()+": "+o.String())
				}
				if len(bad) > 0 {
					if len(outs) > 1 {
						t.Errorf("%s %d (%d of %d at once): %s", e.call, n+1, k+1, len(outs), strings.Join(bad, "; "))
					} else {
						t.Errorf("%s %d: %s", e.call, n+1, strings.Join(bad, "; "))
					}
				}
				hung = hung || o.hung
			}
			if len(outs) > 1 {
				observed = append(observed, fmt.Sprintf("(%d at once; slowest %v)", len(outs), slowest(outs).Round(time.Millisecond)))
			}
			if hung {
				break
			}
			if n == 0 && e.heapCalls && e.as.isPlugin() {
				afterFirst = measure()
			}
		}
		if e.heapCalls {
			after := measure()
			observed = append(observed, fmt.Sprintf("heap over the calls %s MiB", mibDelta(after.heap, before.heap)))
			if after.heap > before.heap+heapSlack {
				t.Errorf("host memory grew by %s MiB over the calls (heap %s → %s MiB)", mibDelta(after.heap, before.heap), mib(before.heap), mib(after.heap))
			}
			// A plugin's instance keeps what its first call grew (up to its memoryPages);
			// the next calls must not add to it.
			if e.as.isPlugin() && calls > 1 {
				observed = append(observed, fmt.Sprintf("after the first %s MiB", mibDelta(after.heap, afterFirst.heap)))
				if after.heap > afterFirst.heap+heapCallSlack {
					t.Errorf("host memory grew by %s MiB over the calls after the first (heap %s → %s MiB; allowed %s): the plugin's calls leak",
						mibDelta(after.heap, afterFirst.heap), mib(afterFirst.heap), mib(after.heap), mib(heapCallSlack))
				}
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
	// No plugin's request reached what it may not reach.
	if n := en.api.leaked.Load() - leakedBefore; n > 0 {
		t.Errorf("%d HTTP requests reached %s, which no plugin may reach: %s", n, leakPath, en.api.lastLeak())
	}
	// (d) Delete, then memory comes back.
	if err := en.remove(fqn); err != nil {
		t.Errorf("delete %s: %v", fqn, err)
	}
	if e.as.isPlugin() {
		// The feature first (it names the plugin), then the plugin; the plugin host no
		// longer has it.
		if err := en.remove(e.pluginFQN()); err != nil {
			t.Errorf("delete %s: %v", e.pluginFQN(), err)
		}
		if err := en.pluginGone(e.pluginFQN(), e.fn); err != nil {
			t.Error(err)
		}
	}
	stats, ok := en.released(baseStats)
	r.stats = stats
	en.codeReleased(base)
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
	if r.mem.exec > base.exec+execSlack {
		t.Errorf("%s of compiled code mapped after the entry, %s over the baseline (allowed %s; a plugin maps 64 KiB): the module's (or the plugin's) code was not freed",
			kib(r.mem.exec), kib(r.mem.exec-base.exec), kib(execSlack))
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
	if e.logged != nil {
		if err := e.logged(lines); err != nil {
			t.Errorf("the server's log: %v", err)
		}
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
