package hostile

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
)

const (
	churnIterations = 200
	churnDuration   = 30 * time.Second
)

// TestChurn applies a module, replaces it (same FQN, different module bytes) and deletes it,
// over and over with the healthy reads running, and checks that memory afterwards is within
// a small bound of before: deleted and replaced modules free their compiled code, instances
// and memories. Each module carries 1 MiB of data and a 4 MiB memory, so a leak of modules,
// instances or memories shows within a few dozen iterations.
func TestChurn(t *testing.T) {
	en := startEnv(t)
	base := en.baseline(t)
	baseStats := en.host.Stats()
	const fqn = "hostile.churn"
	e := entry{name: "churn", call: callGet}
	manifest := e.manifest("churn")
	stop := time.Now().Add(churnDuration)
	var samples []string
	iterations := 0
	for i := 0; i < churnIterations && time.Now().Before(stop) && !t.Failed(); i++ {
		en.what.Store(fmt.Sprintf("churn %d", i))
		en.wd.entry(fmt.Sprintf("churn iteration %d", i))
		for n, v := range []int64{int64(2*i + 1), int64(2*i + 2)} { // apply, then replace
			if err := en.apply(manifest, map[string][]byte{"churn.wasm": churnModule(v)}); err != nil {
				t.Fatalf("iteration %d: apply of module %d: %v", i, v, err)
			}
			// A key of its own per module: a value computed by the module replaced may
			// still be served while fresh, which is the engine's business, not this test's.
			o := en.callKeys(e, fqn, map[string]string{"id": fmt.Sprintf("%d-%d", i, n)})
			if o.err != nil || o.value.GetIntValue() != v {
				t.Fatalf("iteration %d: Get after applying module %d: %v", i, v, o)
			}
		}
		if err := en.remove(fqn); err != nil {
			t.Fatalf("iteration %d: delete: %v", i, err)
		}
		o := en.callKeys(e, fqn, map[string]string{"id": "gone"})
		if connect.CodeOf(o.err) != connect.CodeNotFound {
			t.Fatalf("iteration %d: Get after delete: %v, want NotFound", i, o)
		}
		iterations++
		if iterations%50 == 0 {
			m := measure()
			samples = append(samples, fmt.Sprintf("after %d: heap %s, total %s, RSS %s", iterations,
				mibDelta(m.heap, base.heap), mibDelta(m.total, base.total), mibDelta(m.rss, base.rss)))
		}
	}
	en.checkHealth(t)
	stats, released := en.released(baseStats)
	t.Logf("churn: host before %+v, after %+v", baseStats, stats)
	if !released {
		t.Errorf("the host holds %d modules and %d module blobs after the churn, against %d and %d before: deleted or replaced modules are not released",
			stats.Modules, stats.Blobs, baseStats.Modules, baseStats.Blobs)
	}
	after := measure()
	t.Logf("churn: %d iterations (%d modules applied, each replaced or deleted); healthy reads %d ok, %d failed",
		iterations, 2*iterations, en.load.ok.Load(), en.load.failed.Load())
	t.Logf("churn memory: baseline heap %s MiB, total %s MiB, RSS %s MiB; after: heap %s (%s), total %s (%s), RSS %s (%s) MiB",
		mib(base.heap), mib(base.total), mib(base.rss),
		mib(after.heap), mibDelta(after.heap, base.heap), mib(after.total), mibDelta(after.total, base.total),
		mib(after.rss), mibDelta(after.rss, base.rss))
	if len(samples) > 0 {
		t.Logf("churn memory over the baseline, MiB: %s", strings.Join(samples, "; "))
	}
	if iterations < 20 && !t.Failed() {
		t.Errorf("only %d iterations in %v", iterations, churnDuration)
	}
	if after.heap > base.heap+heapSlack {
		t.Errorf("heap %s MiB after the churn, %s MiB over the baseline (allowed %s): deleted or replaced modules are not freed",
			mib(after.heap), mibDelta(after.heap, base.heap), mib(heapSlack))
	}
	if !raceEnabled && after.rss > base.rss+rssSlack {
		t.Errorf("RSS %s MiB after the churn, %s MiB over the baseline (allowed %s): deleted or replaced modules' code is not freed",
			mib(after.rss), mibDelta(after.rss, base.rss), mib(rssSlack))
	}
	if n := en.load.failed.Load(); n > 0 {
		t.Errorf("%d healthy reads failed during the churn; the last: %s", n, en.load.lastError())
	}
}

const (
	pluginChurnIterations = 60
	pluginChurnDuration   = 10 * time.Second
	pluginDeleteRounds    = 3
)

// TestPluginChurn does to Extism plugins what TestChurn does to modules, under the same read
// load: it applies a plugin with a connector feature naming it, replaces the plugin (other
// module bytes, another config: the feature's next Get is computed by the new one), deletes
// the feature and the plugin, over and over; then, a few times, it deletes a looping plugin
// (and its feature) while calls of it are running. Memory must come back: the heap, RSS
// without -race, and the compiled code each plugin maps (its module and its Extism kernel,
// 64 KiB), which execBytes sees under -race too — deleted and replaced plugins free their
// runtimes, compiled code, instances and memories (corpus/plugin_churn.wat fills a 4 MiB
// memory in each instance, so a leak shows within a few dozen iterations).
func TestPluginChurn(t *testing.T) {
	en := startEnv(t)
	base := en.baseline(t)
	e := entry{name: "plugin_churn", as: asPluginConnector, fn: "value", call: callGet}
	fqn := "hostile." + e.featureName()
	mod := wat(t, "plugin_churn")
	stop := time.Now().Add(pluginChurnDuration)
	var samples []string
	iterations := 0
	for i := 0; i < pluginChurnIterations && time.Now().Before(stop) && !t.Failed(); i++ {
		en.what.Store(fmt.Sprintf("plugin churn %d", i))
		en.wd.entry(fmt.Sprintf("plugin churn iteration %d", i))
		for n, v := range []int64{int64(2*i + 1), int64(2*i + 2)} {
			e.config = fmt.Sprintf("v: %d", v)
			manifest := e.manifest(e.featureName()) // the plugin and the feature naming it,
			if n > 0 {
				manifest = e.pluginManifest() // then the plugin alone, replaced
			}
			bytes := withCustomSection(mod, "churn", []byte(strconv.FormatInt(v, 10)))
			if err := en.apply(manifest, map[string][]byte{e.name + ".wasm": bytes}); err != nil {
				t.Fatalf("iteration %d: apply of plugin version %d: %v", i, v, err)
			}
			o := en.callKeys(e, fqn, map[string]string{"id": fmt.Sprintf("%d-%d", i, n)})
			if o.err != nil || o.value.GetIntValue() != v {
				t.Fatalf("iteration %d: Get after applying plugin version %d: %v", i, v, o)
			}
		}
		for _, name := range []string{fqn, e.pluginFQN()} {
			if err := en.remove(name); err != nil {
				t.Fatalf("iteration %d: delete %s: %v", i, name, err)
			}
		}
		if err := en.pluginGone(e.pluginFQN(), e.fn); err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		if o := en.callKeys(e, fqn, map[string]string{"id": "gone"}); connect.CodeOf(o.err) != connect.CodeNotFound {
			t.Fatalf("iteration %d: Get after delete: %v, want NotFound", i, o)
		}
		iterations++
		if iterations%20 == 0 {
			m := measure()
			samples = append(samples, fmt.Sprintf("after %d: heap %s, RSS %s, code %s", iterations,
				mibDelta(m.heap, base.heap), mibDelta(m.rss, base.rss), mibDelta(m.exec, base.exec)))
		}
	}
	if iterations < 20 && !t.Failed() {
		t.Errorf("only %d iterations in %v", iterations, pluginChurnDuration)
	}

	// Deleted while calls of it run: the calls end at their deadline (or find the plugin
	// gone), the deletes do not wait for them, and the plugin is freed once they return.
	loop := entry{name: "plugin_churn_loop", as: asPluginConnector, fn: "loop", limits: "timeout: 500ms", timeout: "5s", call: callGet, parallel: 8}
	loopFQN := "hostile." + loop.featureName()
	for r := range pluginDeleteRounds {
		if t.Failed() {
			break
		}
		en.wd.entry(fmt.Sprintf("plugin delete during calls, round %d", r))
		bytes := withCustomSection(wat(t, "plugin_loop"), "round", []byte{byte(r)})
		if err := en.apply(loop.manifest(loop.featureName()), map[string][]byte{loop.name + ".wasm": bytes}); err != nil {
			t.Fatalf("round %d: apply: %v", r, err)
		}
		calls := make(chan []outcome, 1)
		go func() { calls <- en.callParallel(loop, loopFQN, r) }()
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		for _, name := range []string{loopFQN, loop.pluginFQN()} {
			if err := en.remove(name); err != nil {
				t.Fatalf("round %d: delete %s while it runs: %v", r, name, err)
			}
		}
		if took := time.Since(start); took > promptApply {
			t.Errorf("round %d: deleting a plugin while its calls run took %v", r, took.Round(time.Millisecond))
		}
		outs := <-calls
		codes := map[string]int{}
		for _, o := range outs {
			codes[codeName(connect.CodeOf(o.err))]++
		}
		if r == 0 {
			t.Logf("plugin deleted while %d calls of it ran: deletes took %v; the calls ended %v in %v at most",
				len(outs), time.Since(start).Round(time.Millisecond), codes, slowest(outs).Round(time.Millisecond))
		}
		for k, o := range outs {
			// The calls running end at their deadline; one that had not found the feature
			// yet finds it gone; none hangs or outlasts the call bound.
			if c := connect.CodeOf(o.err); o.hung || o.took > callBound || (c != connect.CodeDeadlineExceeded && c != connect.CodeNotFound && c != connect.CodeUnavailable) {
				t.Errorf("round %d: call %d of a plugin deleted while it ran: %v, want DeadlineExceeded (or NotFound, Unavailable) within %v", r, k, o, callBound)
			}
		}
		if err := en.pluginGone(loop.pluginFQN(), loop.fn); err != nil {
			t.Errorf("round %d: %v", r, err)
		}
	}

	en.checkHealth(t)
	en.codeReleased(base)
	after := measure()
	t.Logf("plugin churn: %d iterations (%d plugins applied, each replaced or deleted), %d deleted during their calls; healthy reads %d ok, %d failed",
		iterations, 2*iterations, pluginDeleteRounds, en.load.ok.Load(), en.load.failed.Load())
	t.Logf("plugin churn memory: baseline heap %s MiB, RSS %s MiB, compiled code %s MiB; after: heap %s (%s), RSS %s (%s), code %s (%s) MiB",
		mib(base.heap), mib(base.rss), mib(base.exec), mib(after.heap), mibDelta(after.heap, base.heap),
		mib(after.rss), mibDelta(after.rss, base.rss), mib(after.exec), mibDelta(after.exec, base.exec))
	if len(samples) > 0 {
		t.Logf("plugin churn memory over the baseline, MiB: %s", strings.Join(samples, "; "))
	}
	if after.heap > base.heap+heapSlack {
		t.Errorf("heap %s MiB after the plugin churn, %s MiB over the baseline (allowed %s): deleted or replaced plugins are not freed",
			mib(after.heap), mibDelta(after.heap, base.heap), mib(heapSlack))
	}
	if !raceEnabled && after.rss > base.rss+rssSlack {
		t.Errorf("RSS %s MiB after the plugin churn, %s MiB over the baseline (allowed %s): deleted or replaced plugins are not freed",
			mib(after.rss), mibDelta(after.rss, base.rss), mib(rssSlack))
	}
	if after.exec > base.exec+execSlack {
		t.Errorf("%s of compiled code mapped after the plugin churn, %s over the baseline (allowed %s; a plugin maps 64 KiB): deleted or replaced plugins' code is not freed",
			kib(after.exec), kib(after.exec-base.exec), kib(execSlack))
	}
	if n := en.load.failed.Load(); n > 0 {
		t.Errorf("%d healthy reads failed during the plugin churn; the last: %s", n, en.load.lastError())
	}
}
