// Package statetest is the conformance suite every engine.State provider runs against
// itself, so that the in-process store, Redis and any later provider agree on the semantics
// engine/state.go documents: typed round trips, Append and Incr, windows and their expiry,
// previous versions, staleness, entity identity and atomicity under concurrency.
//
// A provider's test calls Run:
//
//	func TestConformance(t *testing.T) {
//		statetest.Run(t, func(t *testing.T) engine.State { return memory.New() })
//	}
//
// The suite measures expiry against the wall clock: it writes with timestamps in the past
// (and, once, waits a few tens of milliseconds for a bucket to expire), so a provider must
// use time.Now as its clock. It uses no provider-specific option, touches only features whose
// names it makes unique per run, and so can run against a shared server.
//
// Where engine.State's documentation leaves room, the suite pins the following down:
//
//   - Values round-trip exactly: every primitive, int64 and float64 extremes, any UTF-8
//     string (NUL included), timestamps to the nanosecond before and after the epoch, and
//     empty lists (of the list's kind). Returned timestamps are compared with time.Equal.
//   - Set is ordered by event time (engine.State's rules): a late Set is superseded and
//     reports the current value's timestamp; with KeepPrevious it lands among the previous
//     versions in timestamp order within Versions and is dropped beyond them or past Over.
//     Equal timestamps: the later write wins, for the current value and among previous ones.
//     A current value past its expiry never supersedes. Concurrent Sets in any order leave
//     the latest timestamp current and the next ones as the previous versions.
//   - Append and Incr apply in call order, whatever their timestamps, and are never
//     superseded; an Update of a list appends the same way.
//   - Append of an empty list stores an empty list; Append and Incr by a wrong kind fail
//     with engine.ErrTypeMismatch, and on a feature of the wrong type with
//     engine.ErrTypeMismatch or engine.ErrUnsupported; a failed call writes nothing.
//   - Get of a version beyond KeepPrevious.Versions, or of any previous version of a
//     feature without KeepPrevious, reports not found without an error.
//   - A replaced value becomes a previous version even when it was already older than
//     staleness (it is then served @-1 until it is KeepPrevious.Over old): a State must not
//     forget a current value that may still become a previous version.
//   - A WindowAdd into a bucket past engine.BucketExpiry may fail with
//     engine.ErrOutOfWindow or succeed, but the bucket is never returned.
//   - Bucket.Updated is the latest timestamp added to the bucket.
//   - Results of WindowBuckets and DeadWindowBuckets may come in any order.
//   - Drop removes exactly one feature's data: not that of a feature whose FQN extends it.
//   - A BatchReader's ReadBatch answers each cell exactly as the single read it stands for
//     (Get, or WindowAggregate / WindowBuckets merged), errors included; a State that is no
//     BatchReader skips that subtest.
//   - A StorageState (programs' address-scoped storage) commits an invocation's storage and
//     its value write in one step, or nothing: a commit based on a version that moved is
//     engine.ErrConflict, one whose write the State refuses applies no storage either, and of
//     commits racing on one version exactly one applies. Values expire at their Expires as of
//     the now LoadStorage is given; Drop removes them. A State that is no StorageState skips
//     those subtests.
//   - Arithmetic never leaves its type's range: an int Incr past ±2^63 (never wrapping), a
//     float Incr to ±Inf, and a WindowAdd taking a bucket's sum to ±Inf fail with
//     engine.ErrOverflow and write nothing — the check and the write are one atomic step.
package statetest

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// Run runs the conformance suite against the States newState returns. Every subtest calls
// newState once, runs in parallel with the others, and closes its State when it ends (so
// newState must not register a Close of its own). newState may call t.Skip, e.g. when the
// server it needs is not available.
func Run(t *testing.T, newState func(t *testing.T) engine.State) {
	t.Helper()
	ns := "st" + strconv.FormatInt(time.Now().UnixNano(), 36) + "x" + strconv.FormatUint(rand.Uint64()>>16, 36)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newState(t)
			if st == nil {
				t.Fatal("newState returned nil")
			}
			t.Cleanup(func() {
				if err := st.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(&env{T: t, st: st, ctx: t.Context(), ns: ns, now: time.Now()})
		})
	}
}

var tests = []struct {
	name string
	fn   func(e *env)
}{
	{"Ping", testPing},
	{"Absent", testAbsent},
	{"RoundTrip", testRoundTrip},
	{"SetReplaces", testSetReplaces},
	{"LateSetSuperseded", testLateSetSuperseded},
	{"LateSetAmongVersions", testLateSetAmongVersions},
	{"LateSetDropped", testLateSetDropped},
	{"EqualTimestamps", testEqualTimestamps},
	{"ExpiredCurrentDoesNotSupersede", testExpiredCurrent},
	{"LateUpdate", testLateUpdate},
	{"AppendIncrCallOrder", testAppendIncrCallOrder},
	{"ConcurrentLateSets", testConcurrentLateSets},
	{"Append", testAppend},
	{"AppendImmutability", testAppendImmutability},
	{"AppendStaleRelativeToWrite", testAppendStale},
	{"AppendErrors", testAppendErrors},
	{"Incr", testIncr},
	{"IncrStaleRelativeToWrite", testIncrStale},
	{"IncrErrors", testIncrErrors},
	{"IncrOverflow", testIncrOverflow},
	{"WindowAddOverflow", testWindowAddOverflow},
	{"Update", testUpdate},
	{"Window", testWindow},
	{"WindowBucketBoundaries", testWindowBoundaries},
	{"BucketExpiry", testBucketExpiry},
	{"DeadWindowBuckets", testDeadWindowBuckets},
	{"Versions", testVersions},
	{"VersionsOver", testVersionsOver},
	{"VersionsOfAppendAndIncr", testVersionsAppendIncr},
	{"Staleness", testStaleness},
	{"FeatureIsolation", testFeatureIsolation},
	{"Drop", testDrop},
	{"KeyEncoding", testKeyEncoding},
	{"ConcurrentIncr", testConcurrentIncr},
	{"ConcurrentWindowAdd", testConcurrentWindowAdd},
	{"ConcurrentAppend", testConcurrentAppend},
	{"ConcurrentEntities", testConcurrentEntities},
	{"BatchRead", testBatchRead},
	{"BatchWrite", testBatchWrite},
	{"Storage", testStorage},
	{"StorageWrite", testStorageWrite},
	{"StorageConcurrentCommits", testStorageConcurrentCommits},
	{"MailboxOrder", testMailboxOrder},
	{"MailboxTokens", testMailboxTokens},
	{"MailboxLease", testMailboxLease},
	{"MailboxRetry", testMailboxRetry},
	{"MailboxAtomic", testMailboxAtomic},
	{"MailboxDrop", testMailboxDrop},
	{"MailboxFull", testMailboxFull},
	{"MailboxFlightOrder", testMailboxFlightOrder},
	{"MailboxDefer", testMailboxDefer},
}

// featureSeq makes feature names unique within a process.
var featureSeq atomic.Int64

// env is one subtest's State with helpers that fail the test on unexpected errors.
type env struct {
	*testing.T
	st  engine.State
	ctx context.Context
	ns  string
	now time.Time // when the subtest started; timestamps are relative to it
}

// feature returns a valid, uniquely named feature: keys [id], freshness 1m, staleness 1h,
// changed by mods.
func (e *env) feature(name string, p engine.Primitive, mods ...func(*engine.Feature)) *engine.Feature {
	e.Helper()
	f := &engine.Feature{
		FQN:       e.ns + "." + name + "_" + strconv.FormatInt(featureSeq.Add(1), 10),
		Primitive: p,
		Freshness: time.Minute,
		Staleness: time.Hour,
		Timeout:   time.Second,
		Keys:      []string{"id"},
		Builder:   engine.Builder{Kind: engine.BuilderSourceless},
	}
	for _, m := range mods {
		m(f)
	}
	if err := f.Validate(); err != nil {
		e.Fatalf("statetest built an invalid feature: %v", err)
	}
	return f
}

func windowed(granularity, staleness time.Duration) func(*engine.Feature) {
	return func(f *engine.Feature) {
		f.Aggrs = engine.AllAggrs
		f.Granularity = granularity
		f.Staleness = staleness
		f.Freshness = min(f.Freshness, staleness)
	}
}

func keepPrevious(versions int, over time.Duration) func(*engine.Feature) {
	return func(f *engine.Feature) { f.KeepPrevious = &engine.KeepPrevious{Versions: versions, Over: over} }
}

func staleness(d time.Duration) func(*engine.Feature) {
	return func(f *engine.Feature) {
		f.Staleness = d
		f.Freshness = min(f.Freshness, d)
	}
}

func keyNames(names ...string) func(*engine.Feature) {
	return func(f *engine.Feature) { f.Keys = names }
}

// keys encodes key values, in the order of f.Keys.
func (e *env) keys(f *engine.Feature, values ...string) string {
	e.Helper()
	if len(values) != len(f.Keys) {
		e.Fatalf("keys: %d values for %d keys", len(values), len(f.Keys))
	}
	k := make(engine.Keys, len(values))
	for i, v := range values {
		k[f.Keys[i]] = v
	}
	enc, err := engine.EncodeKeys(f.Keys, k)
	if err != nil {
		e.Fatalf("EncodeKeys: %v", err)
	}
	return enc
}

// set writes v and checks that it became the current value.
func (e *env) set(f *engine.Feature, keys string, v engine.Value, ts time.Time) {
	e.Helper()
	w := e.setW(f, keys, v, ts)
	if w.Superseded {
		e.Errorf("Set(%s, %q, %v, %v) was superseded by a value at %v, want applied", f.FQN, keys, v, ts, w.Current)
	}
}

// setW writes v and returns what the State reports.
func (e *env) setW(f *engine.Feature, keys string, v engine.Value, ts time.Time) engine.Written {
	e.Helper()
	w, err := e.st.Set(e.ctx, f, keys, v, ts)
	if err != nil {
		e.Fatalf("Set(%s, %q, %v): %v", f.FQN, keys, v, err)
	}
	if !w.Value.Equal(v) {
		e.Errorf("Set(%s, %q, %v): Written.Value = %v, want the value set", f.FQN, keys, v, w.Value)
	}
	return w
}

// wantSuperseded checks that a write was superseded by a current value at current, and was
// kept among the previous versions or dropped as kept says.
func (e *env) wantSuperseded(what string, w engine.Written, current time.Time, kept bool) {
	e.Helper()
	switch {
	case !w.Superseded:
		e.Errorf("%s: applied, want superseded by the value at %v", what, current)
	case !w.Current.Equal(current):
		e.Errorf("%s: superseded by a value at %v, want %v", what, w.Current, current)
	case w.Kept != kept:
		e.Errorf("%s: Kept = %v, want %v", what, w.Kept, kept)
	}
}

func (e *env) get(f *engine.Feature, keys string, version int) (engine.Value, time.Time, bool) {
	e.Helper()
	v, ts, found, err := e.st.Get(e.ctx, f, keys, version)
	if err != nil {
		e.Fatalf("Get(%s, %q, @-%d): %v", f.FQN, keys, version, err)
	}
	return v, ts, found
}

// wantGet checks that version of an entity is want, written at ts.
func (e *env) wantGet(f *engine.Feature, keys string, version int, want engine.Value, ts time.Time) {
	e.Helper()
	v, gotTs, found := e.get(f, keys, version)
	switch {
	case !found:
		e.Errorf("Get(%s, %q, @-%d): not found, want %v", f.FQN, keys, version, want)
	case !v.Equal(want):
		e.Errorf("Get(%s, %q, @-%d) = %v (%s), want %v (%s)", f.FQN, keys, version, v, v.Kind(), want, want.Kind())
	case !gotTs.Equal(ts):
		e.Errorf("Get(%s, %q, @-%d): timestamp %v, want %v", f.FQN, keys, version, gotTs, ts)
	}
}

// wantAbsent checks that version of an entity is not found.
func (e *env) wantAbsent(f *engine.Feature, keys string, version int) {
	e.Helper()
	if v, ts, found := e.get(f, keys, version); found {
		e.Errorf("Get(%s, %q, @-%d) = %v at %v, want not found", f.FQN, keys, version, v, ts)
	}
}

func (e *env) append(f *engine.Feature, keys string, v engine.Value, ts time.Time) engine.Value {
	e.Helper()
	out, err := e.st.Append(e.ctx, f, keys, v, ts)
	if err != nil {
		e.Fatalf("Append(%s, %q, %v): %v", f.FQN, keys, v, err)
	}
	return out
}

func (e *env) incr(f *engine.Feature, keys string, by engine.Value, ts time.Time) engine.Value {
	e.Helper()
	out, err := e.st.Incr(e.ctx, f, keys, by, ts)
	if err != nil {
		e.Fatalf("Incr(%s, %q, %v): %v", f.FQN, keys, by, err)
	}
	return out
}

func (e *env) windowAdd(f *engine.Feature, keys string, x float64, ts time.Time) {
	e.Helper()
	if err := e.st.WindowAdd(e.ctx, f, keys, x, ts); err != nil {
		e.Fatalf("WindowAdd(%s, %q, %v, %v): %v", f.FQN, keys, x, ts, err)
	}
}

// buckets returns an entity's buckets in span, sorted by ID.
func (e *env) buckets(f *engine.Feature, keys string, span engine.WindowSpan) []engine.Bucket {
	e.Helper()
	bs, err := e.st.WindowBuckets(e.ctx, f, keys, span)
	if err != nil {
		e.Fatalf("WindowBuckets(%s, %q, %+v): %v", f.FQN, keys, span, err)
	}
	for _, b := range bs {
		if !span.Contains(b.ID) {
			e.Errorf("WindowBuckets(%s, %q, %+v) returned bucket %d outside the span", f.FQN, keys, span, b.ID)
		}
	}
	slices.SortFunc(bs, func(a, b engine.Bucket) int { return cmp.Compare(a.ID, b.ID) })
	return bs
}

// deadBuckets returns a feature's buckets in span, sorted by keys then ID.
func (e *env) deadBuckets(f *engine.Feature, span engine.WindowSpan) []engine.RawBucket {
	e.Helper()
	bs, err := e.st.DeadWindowBuckets(e.ctx, f, span)
	if err != nil {
		e.Fatalf("DeadWindowBuckets(%s, %+v): %v", f.FQN, span, err)
	}
	for _, b := range bs {
		if !span.Contains(b.ID) || b.FQN != f.FQN {
			e.Errorf("DeadWindowBuckets(%s, %+v) returned %s bucket %d", f.FQN, span, b.FQN, b.ID)
		}
	}
	slices.SortFunc(bs, func(a, b engine.RawBucket) int {
		return cmp.Or(strings.Compare(a.EncodedKeys, b.EncodedKeys), cmp.Compare(a.ID, b.ID))
	})
	return bs
}

// wantBucket checks a bucket's aggregates exactly.
func (e *env) wantBucket(got engine.Bucket, id int64, sum, count, lo, hi float64, updated time.Time) {
	e.Helper()
	if got.ID != id || got.Sum != sum || got.Count != count || got.Min != lo || got.Max != hi || !got.Updated.Equal(updated) {
		e.Errorf("bucket = {ID:%d Sum:%v Count:%v Min:%v Max:%v Updated:%v},\n  want {ID:%d Sum:%v Count:%v Min:%v Max:%v Updated:%v}",
			got.ID, got.Sum, got.Count, got.Min, got.Max, got.Updated, id, sum, count, lo, hi, updated)
	}
}

// wantErr checks that err wraps one of targets.
func (e *env) wantErr(what string, err error, targets ...error) {
	e.Helper()
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	e.Errorf("%s: err = %v, want one wrapping %v", what, err, targets)
}

func testPing(e *env) {
	if err := e.st.Ping(e.ctx); err != nil {
		e.Fatalf("Ping: %v", err)
	}
}

func testAbsent(e *env) {
	f := e.feature("absent", engine.PrimitiveInt, keepPrevious(2, time.Hour))
	k := e.keys(f, "nobody")
	e.wantAbsent(f, k, 0)
	e.wantAbsent(f, k, 1)
	w := e.feature("absent_window", engine.PrimitiveFloat, windowed(time.Minute, time.Hour))
	span := engine.KeptSpan(e.now, w.Staleness, w.Granularity)
	if bs := e.buckets(w, k, span); len(bs) != 0 {
		e.Errorf("WindowBuckets of an entity never written = %+v", bs)
	}
	if bs := e.deadBuckets(w, span); len(bs) != 0 {
		e.Errorf("DeadWindowBuckets of a feature never written = %+v", bs)
	}
}
