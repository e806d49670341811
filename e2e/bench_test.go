//go:build unix

package e2e_test

import (
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/internal/redistest"
)

// TestBenchRedisBaselineProcess runs `osprey bench --baseline-redis` against a host: the
// report says the baseline ran in a child process (the default with a Redis baseline), every
// phase's baseline answers without an error, and Redis counts at least one GET per baseline
// call (that the child reads Redis per call is cmd/osprey.TestServeRedisBaseline).
func TestBenchRedisBaselineProcess(t *testing.T) {
	srv := redistest.Standalone(t)
	s := startServer(t, t.TempDir()) // in-memory state: every GET the Redis counts is the baseline's
	s.mustCLI(t, "apply", "-f", "examples/bench")
	res := runCLI(t, 2*time.Minute, "bench", "--addr", s.url, "--baseline-redis", srv.Addr(),
		"--selector", "bench.scalar", "--duration", "400ms", "--warmup", "50ms", "--rate", "200", "--many", "5",
		"--concurrency", "2", "--output", "json")
	if res.code != 0 && res.code != 1 { // 1: a target missed, which a 400 ms run on a shared machine may
		t.Fatalf("bench: exit %d\n%s", res.code, res.stderr)
	}
	var rep struct {
		BaselineProcess bool   `json:"baseline_process"`
		BaselineRedis   string `json:"baseline_redis"`
		Phases          []struct {
			Call     string `json:"call"`
			Baseline struct {
				Calls  int64 `json:"calls"`
				Errors int64 `json:"errors"`
			} `json:"baseline"`
		} `json:"phases"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("bench report: %v\n%s\n%s", err, res.stdout, res.stderr)
	}
	if !rep.BaselineProcess || rep.BaselineRedis != srv.Addr() || len(rep.Phases) == 0 {
		t.Fatalf("report: baseline_process %v, baseline_redis %q, %d phases", rep.BaselineProcess, rep.BaselineRedis, len(rep.Phases))
	}
	var calls int64
	for _, p := range rep.Phases {
		if p.Baseline.Calls == 0 || p.Baseline.Errors != 0 {
			t.Errorf("%s: the baseline answered %d calls, %d errors", p.Call, p.Baseline.Calls, p.Baseline.Errors)
		}
		calls += p.Baseline.Calls
	}
	out, err := srv.CLI("info", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`cmdstat_get:calls=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("Redis counted no GET:\n%s", out)
	}
	if gets, _ := strconv.ParseInt(m[1], 10, 64); gets < calls {
		t.Errorf("Redis counted %d GETs for %d baseline calls: the child did not read them from Redis", gets, calls)
	}
}
