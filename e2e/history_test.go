//go:build unix

package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/internal/miniotest"
	"github.com/osprey-ml/osprey/internal/redistest"
	"github.com/osprey-ml/osprey/plugins"
	filestore "github.com/osprey-ml/osprey/plugins/historystore/file"
	_ "github.com/osprey-ml/osprey/plugins/historystore/s3"
)

// historyBound bounds the waits for history to reach the storage: flushes come every few
// seconds, a new leader after the lease's TTL, a dead consumer's entries after the claim
// idle time. The time taken is logged, never asserted.
const historyBound = 60 * time.Second

const historyFeature = `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: balance, namespace: hist}
spec:
  primitive: int
  freshness: 1h
  staleness: 720h
  keys: [account]
`

// clicksFeature is a window short enough that its buckets close within the test.
const clicksFeature = `apiVersion: osprey.dev/v1alpha1
kind: Feature
metadata: {name: clicks, namespace: hist}
spec:
  primitive: int
  freshness: 1s
  staleness: 2s
  keys: [user]
  builder:
    aggr: [sum, count, min, max]
    aggrGranularity: 1s
`

// historyFlags are the serve flags of a host on srv's Redis (state, notifier, registry)
// with the historian writing to the history store given.
func historyFlags(srv *redistest.Server, store string, storeCfg string) []string {
	addr := "addrs=" + srv.Addr()
	return []string{"--state", "redis", "--state-config", addr,
		"--notifier", "redis", "--notifier-config", addr + ",claim-idle=1s,block=100ms",
		"--registry", "redis", "--registry-config", addr,
		"--history", store, "--history-config", storeCfg}
}

// historyRecords reads every record of the history in s (duplicates included), with the
// object key each came from.
func historyRecords(t *testing.T, s historian.Storage) (recs []historian.Record, objects []string) {
	t.Helper()
	ctx := context.Background()
	infos, err := s.List(ctx, "fqn=")
	if err != nil {
		t.Fatalf("list the history: %v", err)
	}
	for _, info := range infos {
		o, err := s.Open(ctx, info.Key)
		if err != nil {
			t.Fatalf("open %s: %v", info.Key, err)
		}
		rs, err := historian.DecodeParquet(o, o.Size())
		o.Close()
		if err != nil {
			t.Fatalf("decode %s: %v", info.Key, err)
		}
		recs = append(recs, rs...)
		objects = append(objects, info.Key)
	}
	return recs, objects
}

// balances returns, per account, the set of values recorded for hist.balance.
func balances(recs []historian.Record) map[string]map[int64]int {
	out := map[string]map[int64]int{}
	for _, r := range recs {
		if r.FQN != "hist.balance" || r.Kind != historian.KindWrite {
			continue
		}
		m := out[r.Keys[0]]
		if m == nil {
			m = map[int64]int{}
			out[r.Keys[0]] = m
		}
		m[r.Value.Int()]++
	}
	return out
}

// acked is the set of writes the hosts acknowledged: account → values.
type acked struct {
	mu sync.Mutex
	m  map[string][]int64
	n  int
}

func (a *acked) add(account string, v int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string][]int64{}
	}
	a.m[account] = append(a.m[account], v)
	a.n++
}

// missing returns the acknowledged writes not in recs.
func (a *acked) missing(recs []historian.Record) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	got := balances(recs)
	var out []string
	for account, vs := range a.m {
		for _, v := range vs {
			if got[account][v] == 0 {
				out = append(out, fmt.Sprintf("%s=%d", account, v))
			}
		}
	}
	sort.Strings(out)
	return out
}

// writeBalances sets hist.balance through c from workers goroutines until ctx ends or
// each has written each values; every write acknowledged is added to a. Values are unique
// for a base (base + worker × 10⁶ + i); callers give each call its own base.
func writeBalances(ctx context.Context, c api, base int64, workers, each int, a *acked) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			account := "a" + strconv.Itoa(w)
			for i := 1; i <= each && ctx.Err() == nil; i++ {
				v := base + int64(w*1_000_000+i)
				_, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "hist.balance",
					Keys: map[string]string{"account": account}, Value: structpb.NewNumberValue(float64(v))}))
				if err == nil {
					a.add(account, v)
				} else if ctx.Err() == nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
}

func applyHistoryFeature(t *testing.T, s *ospreyServer) {
	t.Helper()
	c := s.api(protocolNamed("connect"), "")
	if _, err := c.registry.ApplyFeature(context.Background(), connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(historyFeature)})); err != nil {
		t.Fatalf("ApplyFeature: %v", err)
	}
}

// waitHistory polls the history until cond holds for its records.
func waitHistory(t *testing.T, s historian.Storage, what string, cond func([]historian.Record) bool) []historian.Record {
	t.Helper()
	start := time.Now()
	for {
		recs, _ := historyRecords(t, s)
		if cond(recs) {
			t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
			return recs
		}
		if time.Since(start) > historyBound {
			t.Fatalf("timed out after %v waiting for %s (%d records)", historyBound, what, len(recs))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestHistoryToMinIO: `osprey serve` with Redis and MinIO writes every write and every
// touched window bucket to the bucket as Parquet, readable by DuckDB.
func TestHistoryToMinIO(t *testing.T) {
	srv := redistest.Standalone(t)
	mc := miniotest.Start(t)
	cfg := fmt.Sprintf("endpoint=%s,bucket=history,prefix=osprey,access_key=%s,secret_key=%s,create_bucket=true", mc.Endpoint(), mc.AccessKey, mc.SecretKey)
	s := startServer(t, t.TempDir(), append(historyFlags(srv, "s3", cfg), "--history-collect", "1s")...)
	s.mustCLI(t, "apply", "-f", "examples/fraud")
	applyHistoryFeature(t, s)
	c := s.api(protocolNamed("connect"), "")
	if _, err := c.registry.ApplyFeature(context.Background(), connect.NewRequest(&ospreyv1.ApplyFeatureRequest{Manifest: []byte(clicksFeature)})); err != nil {
		t.Fatalf("ApplyFeature clicks: %v", err)
	}
	for i := range 5 {
		if _, err := c.engine.Update(context.Background(), connect.NewRequest(&ospreyv1.UpdateRequest{Fqn: "hist.clicks",
			Keys: map[string]string{"user": "u1"}, Value: structpb.NewNumberValue(float64(i + 1))})); err != nil {
			t.Fatalf("update hist.clicks: %v", err)
		}
	}
	s.mustCLI(t, "ingest", "fraud.transactions", "examples/fraud/transactions.jsonl")
	var a acked
	writeBalances(context.Background(), s.api(protocolNamed("connect"), ""), 0, 2, 50, &a)

	store, err := plugins.NewHistoryStore(context.Background(), "s3", mustKV(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// A flush puts its objects one at a time (one per feature): wait for every feature's
	// writes, not only the balances', or a poll between two Puts sees half a flush.
	recs := waitHistory(t, store, "every write in MinIO", func(recs []historian.Record) bool {
		return len(a.missing(recs)) == 0 && countKind(recs, "fraud.amount", historian.KindBucketSnapshot) > 0 &&
			countKind(recs, "fraud.amount", historian.KindWrite) >= 3 &&
			countKind(recs, "hist.clicks", historian.KindWrite) >= 5 &&
			countKind(recs, "hist.clicks", historian.KindBucketFinal) > 0
	})
	var clicks int64
	for _, r := range recs {
		switch {
		case r.FQN == "hist.clicks" && r.Kind == historian.KindWrite:
			clicks += r.Value.Int()
		case r.FQN == "hist.clicks" && r.Kind == historian.KindBucketFinal:
			if r.Bucket == nil || r.Bucket.Open || r.Bucket.Count == 0 {
				t.Errorf("final bucket %+v", r.Bucket)
			}
		}
	}
	if clicks != 15 {
		t.Errorf("hist.clicks adds sum to %d, want 15; its records:", clicks)
		for _, r := range recs {
			if r.FQN == "hist.clicks" {
				t.Logf("  %+v", r)
			}
		}
	}
	adds := 0
	for _, r := range recs {
		if r.FQN == "fraud.amount" && r.Kind == historian.KindWrite {
			adds++
			if r.Value.Float() <= 0 || r.Keys[0] == "" {
				t.Errorf("window add %+v", r)
			}
		}
		if r.Fence <= 0 {
			t.Fatalf("record under fence %d; the Redis leader's fences start at 1", r.Fence)
		}
	}
	if adds != 3 { // the example's four rows, one declined
		t.Errorf("%d fraud.amount adds recorded, want 3", adds)
	}
	_, objects := historyRecords(t, store)
	for _, k := range objects {
		if !regexp.MustCompile(`^fqn=[a-z.]+/date=\d{4}-\d{2}-\d{2}/[^/]+\.parquet$`).MatchString(k) {
			t.Errorf("object key %q", k)
		}
	}
	checkWithDuckDB(t, store, objects)
}

func countKind(recs []historian.Record, fqn string, k historian.RecordKind) int {
	n := 0
	for _, r := range recs {
		if r.FQN == fqn && r.Kind == k {
			n++
		}
	}
	return n
}

func mustKV(t *testing.T, s string) plugins.Config {
	t.Helper()
	cfg := plugins.Config{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		cfg[k] = v
	}
	return cfg
}

// checkWithDuckDB reads the objects with DuckDB (historian/testdata/duckdb), a reader that
// shares no code with ours, and checks it sees as many rows as we decode.
func checkWithDuckDB(t *testing.T, store historian.Storage, objects []string) {
	t.Helper()
	script := filepath.Join(repoRoot, "historian", "testdata", "duckdb", "read.mjs")
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "@duckdb")); err != nil || serr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("DuckDB reader unavailable (node: %v; run npm ci in %s): CI must run it", err, filepath.Dir(script))
		}
		t.Log("DuckDB reader not installed (node or npm ci in historian/testdata/duckdb); skipping the independent read")
		return
	}
	dir := t.TempDir()
	for i, k := range objects {
		o, err := store.Open(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
		o.Close()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, strconv.Itoa(i)+".parquet")
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
		recs, err := historian.DecodeParquet(bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(node, script, path).Output()
		if err != nil {
			t.Fatalf("DuckDB on %s: %v", k, err)
		}
		if rows := len(lines(string(out))); rows != len(recs) {
			t.Errorf("DuckDB reads %d rows of %s, we decode %d", rows, k, len(recs))
		}
	}
}

// TestHistoryCrashSafety: a host SIGKILLed in the middle of a stream of acknowledged writes,
// several times, then restarted: every acknowledged write is in the history (duplicates are
// allowed: docs/history.md says how to drop them).
func TestHistoryCrashSafety(t *testing.T) {
	srv := redistest.Standalone(t, "--appendonly", "yes", "--appendfsync", "always")
	dir := t.TempDir()
	flags := historyFlags(srv, "file", "dir="+dir)
	store, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	var a acked
	for round := range 3 {
		s := startServer(t, t.TempDir(), flags...)
		if round == 0 {
			applyHistoryFeature(t, s)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			writeBalances(ctx, s.api(protocolNamed("connect"), ""), int64(round)*100_000_000, 3, 1_000_000, &a)
		}()
		// Kill points: before the host ever led or flushed (round 0); then once it has
		// written history of its own, at two points of its flush cycle.
		if round > 0 {
			base := int64(round) * 100_000_000
			waitHistory(t, store, fmt.Sprintf("round %d's first records", round), func(recs []historian.Record) bool {
				for _, r := range recs {
					if r.FQN == "hist.balance" && r.Value.Int() >= base && r.Value.Int() < base+100_000_000 {
						return true
					}
				}
				return false
			})
		}
		time.Sleep([]time.Duration{300 * time.Millisecond, 200 * time.Millisecond, 2500 * time.Millisecond}[round])
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		stop()
		<-done
		t.Logf("round %d: killed after %d acknowledged writes in all", round, a.n)
	}
	s := startServer(t, t.TempDir(), flags...) // the survivor: its historian takes over the dead ones' entries
	recs := waitHistory(t, store, "every acknowledged write in the history", func(recs []historian.Record) bool {
		return len(a.missing(recs)) == 0
	})
	dups := 0
	for _, vs := range balances(recs) {
		for _, n := range vs {
			dups += n - 1
		}
	}
	t.Logf("%d acknowledged writes, all recorded; %d duplicate records (%d records in all)", a.n, dups, len(recs))
	fences := map[string][]int64{}
	for _, r := range recs {
		if r.FQN == "hist.balance" {
			k := r.Keys[0] + "=" + strconv.FormatInt(r.Value.Int(), 10)
			fences[k] = append(fences[k], r.Fence)
		}
	}
	pairs := map[string]int{}
	for _, fs := range fences {
		if len(fs) > 1 {
			sort.Slice(fs, func(i, j int) bool { return fs[i] < fs[j] })
			pairs[fmt.Sprint(fs)]++
		}
	}
	t.Logf("duplicates by fences: %v", pairs)
	s.stop(t)
}

// TestHistoryLeaderFailover: two replicas on one Redis write history to one store; the
// leader is killed; the other takes over (the time logged); every acknowledged write is in
// the history, and the dead leader wrote nothing after the new one took over.
func TestHistoryLeaderFailover(t *testing.T) {
	srv := redistest.Standalone(t)
	dir := t.TempDir()
	flags := historyFlags(srv, "file", "dir="+dir)
	x := startServer(t, t.TempDir(), flags...)
	applyHistoryFeature(t, x)
	y := startServer(t, t.TempDir(), flags...)
	leader, other := x, y
	deadline := time.Now().Add(historyBound)
	for !strings.Contains(leader.log.String(), "historian: leading") {
		if strings.Contains(other.log.String(), "historian: leading") {
			leader, other = other, leader
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("neither replica became the historian's leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var a acked
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { writeBalances(ctx, leader.api(protocolNamed("connect"), ""), 0, 2, 1_000_000, &a) })
	wg.Go(func() { writeBalances(ctx, other.api(protocolNamed("connect"), ""), 100_000_000, 2, 1_000_000, &a) })
	store, err := filestore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Kill the leader once it has written some history.
	waitHistory(t, store, "the first leader's first objects", func(recs []historian.Record) bool { return len(recs) > 0 })
	killed := time.Now()
	_ = leader.cmd.Process.Signal(syscall.SIGKILL)
	<-leader.exited
	leader.mu.Lock()
	leader.stopped = true
	leader.mu.Unlock()
	for !strings.Contains(other.log.String(), "historian: leading") {
		if time.Since(killed) > historyBound {
			t.Fatal("the surviving replica did not take over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("the other replica leads %v after the leader was killed", time.Since(killed).Round(time.Millisecond))
	time.Sleep(time.Second)
	stop()
	wg.Wait()
	recs := waitHistory(t, store, "every acknowledged write in the history", func(recs []historian.Record) bool {
		return len(a.missing(recs)) == 0
	})
	// No write is recorded under two fences: the new leader skipped what the dead one
	// wrote and had not acknowledged.
	fencesOf := map[string]map[int64]bool{}
	for _, r := range recs {
		if r.FQN != "hist.balance" {
			continue
		}
		k := r.Keys[0] + "=" + strconv.FormatInt(r.Value.Int(), 10)
		if fencesOf[k] == nil {
			fencesOf[k] = map[int64]bool{}
		}
		fencesOf[k][r.Fence] = true
	}
	twice := 0
	for _, fs := range fencesOf {
		if len(fs) > 1 {
			twice++
		}
	}
	if twice > 0 {
		t.Errorf("%d writes recorded under two fencing tokens", twice)
	}
	// Object names start with their write time and fence: the old fence's objects all
	// come before the new fence's first.
	_, objects := historyRecords(t, store)
	first := map[int64]string{}
	last := map[int64]string{}
	for _, k := range objects {
		name := k[strings.LastIndex(k, "/")+1:]
		parts := strings.SplitN(name, "-", 3)
		fence, _ := strconv.ParseInt(parts[1], 10, 64)
		if first[fence] == "" || parts[0] < first[fence] {
			first[fence] = parts[0]
		}
		if parts[0] > last[fence] {
			last[fence] = parts[0]
		}
	}
	if len(first) < 2 {
		t.Fatalf("objects under fences %v: want the dead leader's and the new one's", first)
	}
	var fences []int64
	for f := range first {
		fences = append(fences, f)
	}
	sort.Slice(fences, func(i, j int) bool { return fences[i] < fences[j] })
	for i := 1; i < len(fences); i++ {
		if last[fences[i-1]] > first[fences[i]] {
			t.Errorf("fence %d wrote at %s, after fence %d began at %s", fences[i-1], last[fences[i-1]], fences[i], first[fences[i]])
		}
	}
}

// TestHistoryS3Outage: with MinIO stopped, writes keep succeeding and the historian holds
// (within its bound) what it could not write; when MinIO is back every record is written.
func TestHistoryS3Outage(t *testing.T) {
	srv := redistest.Standalone(t)
	mc := miniotest.Start(t)
	cfg := fmt.Sprintf("endpoint=%s,bucket=history,access_key=%s,secret_key=%s,create_bucket=true", mc.Endpoint(), mc.AccessKey, mc.SecretKey)
	s := startServer(t, t.TempDir(), historyFlags(srv, "s3", cfg)...)
	applyHistoryFeature(t, s)
	c := s.api(protocolNamed("connect"), "")
	var a acked
	writeBalances(context.Background(), c, 0, 2, 20, &a)
	mc.Stop()
	before := a.n
	writeBalances(context.Background(), c, 100_000_000, 2, 200, &a)
	if got := a.n - before; got != 400 {
		t.Fatalf("%d of 400 writes acknowledged with MinIO down: writes must not wait for the history", got)
	}
	deadline := time.Now().Add(historyBound)
	for !strings.Contains(s.log.String(), "historian: write failed; retrying") {
		if time.Now().After(deadline) {
			t.Fatal("the historian never tried to write while MinIO was down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	mc.Start()
	store, err := plugins.NewHistoryStore(context.Background(), "s3", mustKV(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	waitHistory(t, store, "every write after MinIO came back", func(recs []historian.Record) bool {
		return len(a.missing(recs)) == 0
	})
}
