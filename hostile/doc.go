// Package hostile is Osprey's hostile corpus: WebAssembly modules written to take a host
// down, stall it or make it take memory it should not (DESIGN.md, "The sandbox is the
// product"), and the tests that run them against a live server under load.
//
// The package has no code of its own; everything is in its tests:
//
//   - corpus/*.wat are the committed modules, in the WebAssembly text format. Each file
//     opens with its class, how it is applied (as a feature program, a middleware, or just
//     uploaded) and the outcome the host must produce. The tests compile them with
//     wat2wasm (Debian's wabt package; CI installs it, and without it the tests fail when
//     CI=true and skip otherwise).
//   - generate_test.go builds the modules too big to commit as text: a million nested
//     blocks, br_tables of ten million and of one million targets, 256 Mi locals declared
//     in a few bytes, a data segment larger than any memory allowed, 30 MB of bytes that
//     are not Wasm, and TestChurn's modules.
//   - TestHostileCorpus (corpus_test.go) starts one server in process (server.New over
//     engine.New, the in-process state store and a host.Host, served by Server.Serve on a
//     loopback listener),
//     keeps a healthy feature under a steady read load, and for each entry of its table
//     applies the module, makes the hostile call and checks that the outcome matches the
//     table (a Connect code and a message naming the feature), that /healthz still
//     answers, that the healthy reads kept succeeding, that the server's log stayed
//     bounded and unspoofed, and that memory returned near its baseline once the feature
//     was deleted.
//   - TestChurn applies, replaces and deletes modules in a loop under the same read load
//     and checks that memory comes back: deleted and replaced modules free their compiled
//     code, instances and memories.
//
// A guest that cannot be stopped can freeze the whole test process (a stop-the-world GC
// waits for it forever), so the tests run a watchdog in a child process (the test binary
// itself, re-executed) that kills the test, naming the entry, when the test stops sending
// it heartbeats. Entries are subtests: -run 'TestHostileCorpus/^loop$' runs one; the
// test flag -hostile.logs copies the server's log to stderr.
//
// The tests are skipped with -short.
package hostile
