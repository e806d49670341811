// Package hostile is Osprey's hostile corpus: WebAssembly modules written to take a host
// down, stall it or make it take memory it should not (DESIGN.md, "The sandbox is the
// product"), and the tests that run them against a live server under load.
//
// The package has no code of its own; everything is in its tests:
//
//   - corpus/*.wat are the committed modules, in the WebAssembly text format. Each file
//     opens with its class, how it is applied (as a feature program, a middleware, an
//     Extism plugin, or just uploaded) and the outcome the host must produce. The tests
//     compile them with wat2wasm (Debian's wabt package; CI installs it, and without it the
//     tests fail when CI=true and skip otherwise).
//   - corpus/plugin_*.wat are Extism plugins, written by hand against the Extism kernel ABI
//     ("extism:host/env": alloc, store_u64, output_set, log_*, http_request, var_set, …).
//     They are the corpus's own rather than host/extism/testdata/hostile's: like every
//     module here they are built from text by the test (that package's tests read
//     committed .wasm files), one file can serve several entries (plugin_loop.wat is a
//     middleware, an encoder and a connector), and their outputs follow the roles' JSON
//     contracts (docs/plugins.md), so that a call that is not stopped succeeds visibly. A
//     few plugin entries reuse the ABI corpus's structural bombs (nested blocks, locals,
//     table_huge.wat, …) as a plugin's module: the plugin host checks them too.
//   - generate_test.go builds the modules too big to commit as text: a million nested
//     blocks, br_tables of ten million and of one million targets, 256 Mi locals declared
//     in a few bytes, a data segment larger than any memory allowed, 30 MB of bytes that
//     are not Wasm, and TestChurn's modules.
//   - TestHostileCorpus (corpus_test.go) starts one server in process (server.New over
//     engine.New, the in-process state store, a host.Host and an extism.Set, wired as
//     osprey serve wires them, served by Server.Serve on a loopback listener),
//     keeps a healthy feature under a steady read load, and for each entry of its table
//     applies the module, makes the hostile call and checks that the outcome matches the
//     table (a Connect code and a message naming the feature), that /healthz still
//     answers, that the healthy reads kept succeeding, that the server's log stayed
//     bounded and unspoofed, and that memory returned near its baseline once the feature
//     was deleted: the heap, RSS (without -race), and the machine code wazero compiled
//     (anonymous executable mappings, which -race does not blur).
//   - Plugin entries (plugin_*) apply a Plugin manifest, hostile.<entry>, with its module,
//     and in the same request a feature, hostile.<entry>_feature, naming its function in
//     one role: a preSet or preGet middleware (spec.middlewares[].plugin; the call is a
//     Set or a Get), an encoder (the call sets a value, then reads
//     hostile.<entry>_feature[hostile.<entry>]), or a connector (spec.builder.plugin,
//     computed on Get); or the Plugin alone, for those refused at apply. The server's
//     plugin policy is osprey serve's default allowing the loopback address, where the
//     test serves what the HTTP plugins ask for (apiServer: a request that never answers,
//     one that drips, a 64 MiB body, 2 MiB of headers, a redirect, and a path no plugin
//     may reach, whose hits fail every entry). After the feature, the plugin is deleted,
//     and the plugin host must no longer have it. The entries cover loops (as each role,
//     and 32 calls at once, more than the plugin's 16 instances) and host calls, HTTP
//     and sleeps that never end (DeadlineExceeded within the call bound, the next calls
//     too), recursion and traps (Internal), memory growth of the plugin's memory and of
//     the kernel's (capped; the host's memory flat over the calls after the first),
//     variables, outputs, inputs, HTTP bodies and headers over their caps
//     (ResourceExhausted), JSON bombs and proc_exit (FailedPrecondition), HTTP to hosts
//     not declared or through a redirect (FailedPrecondition: extism.ErrDenied), log
//     floods and error messages carrying fake log lines (bounded, marked as the plugin's,
//     unspoofed), and, at apply, modules that are not Wasm or break the structural
//     limits, memory declared beyond the plugin's memoryPages, a start function or an
//     _initialize that never ends (DeadlineExceeded within the plugin's timeout), imports
//     the host does not provide, undeclared functions, and hosts or limits beyond the
//     policy (FailedPrecondition naming spec.allowedHosts[0], spec.limits.timeout).
//   - TestChurn applies, replaces and deletes modules in a loop under the same read load
//     and checks that memory comes back: deleted and replaced modules free their compiled
//     code, instances and memories. TestPluginChurn does the same to plugins (a connector
//     with a 4 MiB memory, replaced with new bytes and config, then deleted with its
//     feature), then deletes a looping plugin while calls of it run: deleted and replaced
//     plugins free their runtimes, compiled code (execBytes), instances and memories.
//
// A guest that cannot be stopped can freeze the whole test process (a stop-the-world GC
// waits for it forever), so the tests run a watchdog in a child process (the test binary
// itself, re-executed) that kills the test, naming the entry, when the test stops sending
// it heartbeats. Entries are subtests: -run 'TestHostileCorpus/^loop$' runs one; the
// test flag -hostile.logs copies the server's log to stderr.
//
// The tests are skipped with -short.
package hostile
