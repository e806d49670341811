package hostile

import (
	"fmt"
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
