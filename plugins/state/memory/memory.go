// Package memory is Osprey's in-process state store, the embedded default. It keeps every
// entity in memory, is registered with the plugins registry as "memory", and passes the
// State conformance suite (engine/statetest).
//
// # Layout
//
// Entities are spread over 64 shards by a hash of (feature FQN, encoded keys); each shard
// has its own sync.RWMutex, so reads of different entities never contend and writes contend
// only within a shard. Inside a shard, entities are indexed by FQN and then by encoded keys:
// the first level is the per-feature index DeadWindowBuckets walks, so listing one feature's
// buckets never scans other features.
//
// A windowed entity keeps its buckets in a slice sorted by bucket ID rather than a map:
// a window is a few dozen to a few thousand consecutive buckets, writes nearly always go to
// the newest one (checked first, O(1)), a span read is a binary search followed by one
// contiguous copy, and expired buckets are always a prefix that is dropped in one move. A
// map would cost more memory and a hash per write, and lose the ordering: a span read would
// take one lookup per bucket ID and dropping expired buckets a scan of them all.
//
// Lists grown by Append are amortised O(1) per element: the store keeps spare capacity
// behind its own copy of a list and fills it in place, which no Value handed out can see
// (they are all shorter, with their capacity clipped).
//
// # Expiry
//
// Reads apply the expiry rules of engine.State exactly against the clock (WithClock): a
// current value is absent once now − its timestamp ≥ staleness, a previous value once it is
// KeepPrevious.Over old, a bucket at engine.BucketExpiry. A janitor goroutine, started by
// New and stopped by Close, deletes entities with nothing left to serve and drops expired
// buckets, so that memory does not grow with entities nobody writes any more. An entity is
// only deleted when all of its parts have expired, a current value counting as alive while
// it may still become a previous version (for KeepPrevious.Over), so the janitor never
// changes what a read observes, nor what a write does unless it is back-dated by more than
// staleness.
package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
)

// DefaultJanitorInterval is how often the janitor deletes expired entries unless
// WithJanitorInterval says otherwise.
const DefaultJanitorInterval = time.Minute

// ErrClosed is returned by every method of a State after Close.
var ErrClosed = errors.New("memory: state is closed")

const numShards = 64 // a power of two

func init() {
	plugins.RegisterState("memory", newFromConfig)
}

// newFromConfig is the registry factory. It reads janitor_interval (a duration; 0 disables
// the janitor).
func newFromConfig(_ context.Context, cfg plugins.Config) (engine.State, error) {
	if err := cfg.Check("janitor_interval"); err != nil {
		return nil, err
	}
	d, err := cfg.Duration("janitor_interval", DefaultJanitorInterval)
	if err != nil {
		return nil, err
	}
	if d < 0 {
		return nil, fmt.Errorf("%w: key %q: %v is negative (0 disables the janitor)", plugins.ErrInvalidConfig, "janitor_interval", d)
	}
	return New(WithJanitorInterval(d)), nil
}

// Option configures a State.
type Option func(*State)

// WithClock sets the clock expiry is measured against (time.Now by default; nil keeps it).
// It must be safe for concurrent use.
func WithClock(now func() time.Time) Option {
	return func(s *State) {
		if now != nil {
			s.now = now
		}
	}
}

// WithJanitorInterval sets how often the janitor deletes expired entries
// (DefaultJanitorInterval by default). An interval ≤ 0 disables the janitor: expired values
// are still never served, but they stay in memory until overwritten.
func WithJanitorInterval(d time.Duration) Option {
	return func(s *State) { s.janitorInterval = d }
}

// WithLogger sets the logger the janitor reports to (slog.Default by default; nil keeps it).
func WithLogger(l *slog.Logger) Option {
	return func(s *State) {
		if l != nil {
			s.log = l
		}
	}
}

// State is the in-process engine.State. It is safe for concurrent use; every method
// finishes in bounded time without I/O (it implements engine.Blocker). Its methods ignore
// ctx except DeadWindowBuckets, which checks it between shards.
//
// The zero State is not usable; create one with New and release it with Close.
type State struct {
	seed            maphash.Seed
	now             func() time.Time
	log             *slog.Logger
	janitorInterval time.Duration

	closed    atomic.Bool
	closeOnce sync.Once
	stop      chan struct{} // closed by Close to stop the janitor
	done      chan struct{} // closed by the janitor when it returns; nil without one

	shards [numShards]shard
	mail   mailboxes // programs' messages (mailbox.go)
}

var (
	_ engine.State        = (*State)(nil)
	_ engine.Blocker      = (*State)(nil)
	_ engine.BatchReader  = (*State)(nil)
	_ engine.StorageState = (*State)(nil)
)

// shard is one lock's worth of entities, padded to its own cache lines.
type shard struct {
	mu       sync.RWMutex
	features map[string]*featureEntries // by FQN
	_        [64 - (unsafe.Sizeof(sync.RWMutex{})+unsafe.Sizeof(map[string]int(nil)))%64]byte
}

// featureEntries holds a feature's entities within one shard.
type featureEntries struct {
	// f is the feature as of the latest write: the janitor judges expiry by its durations.
	f       *engine.Feature
	entries map[string]*entry // by encoded keys
}

// entry is one entity. Values in it are never mutated, only replaced, except for the unused
// capacity of buf (see appendList), so Values handed out stay valid after the lock is released.
type entry struct {
	cur engine.Value // the current value; Null when there is none
	ts  int64        // cur's timestamp, Unix nanoseconds
	// buf is the backing slice (full capacity) of a list cur built by Append, which further
	// appends fill in place; nil when cur's slice is not the store's own.
	buf any
	// hist is a ring of previous values: oldest first while it grows, then hist[next] is the
	// oldest and hist[next-1] the newest.
	hist []stamped
	next int
	// buckets are a windowed entity's buckets, sorted by ID, none expired as of the latest write.
	buckets []engine.Bucket
	// storage is its program's address-scoped storage (storage.go), by name; version
	// counts its commits.
	storage        map[string]engine.StoredValue
	storageVersion uint64
}

type stamped struct {
	v  engine.Value
	ts int64
}

// New returns an empty State and starts its janitor.
func New(opts ...Option) *State {
	s := &State{
		seed:            maphash.MakeSeed(),
		now:             time.Now,
		log:             slog.Default(),
		janitorInterval: DefaultJanitorInterval,
		stop:            make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	s.mail.boxes = map[mailboxKey]*mailbox{}
	for i := range s.shards {
		s.shards[i].features = make(map[string]*featureEntries)
	}
	if s.janitorInterval > 0 {
		s.done = make(chan struct{})
		go s.janitor(s.janitorInterval)
	}
	return s
}

// NonBlocking reports true: every call finishes in bounded time without I/O.
func (s *State) NonBlocking() bool { return true }

// Ping returns ErrClosed after Close and nil before.
func (s *State) Ping(context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Close stops the janitor and waits for it to return. Later calls of any method fail with
// ErrClosed; Close itself may be called again and returns nil.
func (s *State) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		if s.done != nil {
			<-s.done
		}
	})
	return nil
}

// Len returns the number of entities held, expired or not (for metrics and tests).
func (s *State) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, fe := range sh.features {
			n += len(fe.entries)
		}
		sh.mu.RUnlock()
	}
	return n
}

// Get returns the current value (version 0) or the Nth previous value of an entity. It
// does not allocate.
func (s *State) Get(_ context.Context, f *engine.Feature, keys string, version int) (engine.Value, time.Time, bool, error) {
	if err := s.check("get", f, false); err != nil {
		return engine.Null, time.Time{}, false, err
	}
	if version < 0 {
		return engine.Null, time.Time{}, false, fmt.Errorf("memory: get %s: %w: version %d is negative", f.FQN, engine.ErrVersionOutOfRange, version)
	}
	var limit int64
	switch kp := f.KeepPrevious; {
	case version == 0:
		limit = int64(f.Staleness)
	case kp != nil && version <= kp.Versions:
		limit = int64(kp.Over)
	default:
		return engine.Null, time.Time{}, false, nil
	}
	sh := s.shardFor(f.FQN, keys)
	var v stamped
	sh.mu.RLock()
	if e := sh.get(f.FQN, keys); e != nil {
		if version == 0 {
			v = stamped{e.cur, e.ts}
		} else {
			v, _ = e.prev(version)
		}
	}
	sh.mu.RUnlock()
	if v.v.IsNull() || v.ts <= s.now().UnixNano()-limit {
		return engine.Null, time.Time{}, false, nil
	}
	return v.v, time.Unix(0, v.ts).UTC(), true, nil
}

// Set makes v the current value of an entity unless the current value has a later
// timestamp (engine.State's event-time rule); the replaced value becomes version 1 when the
// feature keeps previous values. A late v is superseded: it goes into the previous versions
// in timestamp order when it falls within Versions and is younger than Over, and is dropped
// otherwise. Comparison and write happen under the shard's lock. v must have the feature's
// type.
func (s *State) Set(_ context.Context, f *engine.Feature, keys string, v engine.Value, ts time.Time) (engine.Written, error) {
	if err := s.check("set", f, false); err != nil {
		return engine.Written{}, err
	}
	if v.Kind() != engine.Kind(f.Primitive) {
		return engine.Written{}, typeError("set", f, v)
	}
	sh := s.shardFor(f.FQN, keys)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return s.setLocked(sh, f, keys, v, ts), nil
}

// setLocked is Set's write, under sh.mu held for writing.
func (s *State) setLocked(sh *shard, f *engine.Feature, keys string, v engine.Value, ts time.Time) engine.Written {
	t := ts.UnixNano()
	now := s.now().UnixNano()
	e := sh.getOrCreate(f, keys)
	if !e.retained(f, now) {
		// Absent, of another type, or past its expiry: nothing to order against, and the
		// history (older still) has expired too.
		e.cur, e.ts, e.buf, e.hist, e.next = engine.Null, 0, nil, nil, 0
	}
	w := engine.Written{Value: v}
	if !e.cur.IsNull() && t < e.ts {
		w.Superseded, w.Current = true, time.Unix(0, e.ts).UTC()
		w.Kept = e.insertPrevious(f, stamped{v, t}, now)
		return w
	}
	e.pushCurrent(f)
	e.cur, e.ts, e.buf = v, t, nil
	return w
}

// Append appends the elements of the list v to a list feature's current value, or to an
// empty list when it is absent or stale relative to the write, and returns the result.
//
// The result's timestamp is the later of ts and the timestamp of the list appended to.
// Appends are amortised O(len(v)): the store over-allocates its own copy of the list and
// fills the spare capacity in place; Values handed out earlier are never affected because
// they end before it (and their capacity is clipped, so an append by their holder copies).
func (s *State) Append(_ context.Context, f *engine.Feature, keys string, v engine.Value, ts time.Time) (engine.Value, error) {
	if err := s.check("append", f, false); err != nil {
		return engine.Null, err
	}
	if !f.Primitive.IsList() {
		return engine.Null, fmt.Errorf("memory: append %s: %w: the feature is %s, not a list", f.FQN, engine.ErrUnsupported, f.Primitive)
	}
	if v.Kind() != engine.Kind(f.Primitive) {
		return engine.Null, typeError("append", f, v)
	}
	sh := s.shardFor(f.FQN, keys)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return s.appendLocked(sh, f, keys, v, ts), nil
}

// appendLocked is Append's write, under sh.mu held for writing.
func (s *State) appendLocked(sh *shard, f *engine.Feature, keys string, v engine.Value, ts time.Time) engine.Value {
	t := ts.UnixNano()
	e := sh.getOrCreate(f, keys)
	base, buf, newTs := engine.Null, any(nil), t
	if e.live(f, t) {
		base, buf, newTs = e.cur, e.buf, max(e.ts, t)
	}
	out, buf := appendList(f.Primitive, base, buf, v)
	e.pushCurrent(f)
	e.cur, e.ts, e.buf = out, newTs, buf
	return out
}

// Incr adds by to an int or float feature's current value, or to 0 when it is absent or
// stale relative to the write, and returns the result. by must be an int for an int feature
// and a float for a float feature. A result that does not fit — an int sum past the int64
// range, a float sum (or by itself) that is not finite — fails with engine.ErrOverflow,
// under the shard's lock, so nothing is written.
//
// The result's timestamp is the later of ts and the timestamp of the value added to.
func (s *State) Incr(_ context.Context, f *engine.Feature, keys string, by engine.Value, ts time.Time) (engine.Value, error) {
	if err := s.check("incr", f, false); err != nil {
		return engine.Null, err
	}
	if !f.Primitive.IsNumeric() {
		return engine.Null, fmt.Errorf("memory: incr %s: %w: %w: the feature is %s, not int or float", f.FQN, engine.ErrUnsupported, engine.ErrTypeMismatch, f.Primitive)
	}
	if by.Kind() != engine.Kind(f.Primitive) {
		return engine.Null, typeError("incr", f, by)
	}
	t := ts.UnixNano()
	sh := s.shardFor(f.FQN, keys)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out, newTs := by, t
	e := sh.get(f.FQN, keys)
	if e != nil && e.live(f, t) {
		newTs = max(e.ts, t)
		if f.Primitive == engine.PrimitiveInt {
			a, b := e.cur.Int(), by.Int()
			sum := a + b
			if (b > 0 && sum < a) || (b < 0 && sum > a) {
				return engine.Null, fmt.Errorf("memory: incr %s: %w: %d + %d does not fit an int64", f.FQN, engine.ErrOverflow, a, b)
			}
			out = engine.Int(sum)
		} else {
			out = engine.Float(e.cur.Float() + by.Float())
		}
	}
	if x := out.Float(); math.IsInf(x, 0) || math.IsNaN(x) {
		return engine.Null, fmt.Errorf("memory: incr %s: %w: the result is %v, not a finite float", f.FQN, engine.ErrOverflow, x)
	}
	e = sh.getOrCreate(f, keys)
	e.pushCurrent(f)
	e.cur, e.ts, e.buf = out, newTs, nil
	return out, nil
}

// Update writes v the way the feature's type calls for (engine.UpdateVia: WindowAdd, Append
// or Set, each ordered as it is).
func (s *State) Update(ctx context.Context, f *engine.Feature, keys string, v engine.Value, ts time.Time) (engine.Written, error) {
	return engine.UpdateVia(ctx, s, "memory", f, keys, v, ts)
}

// WindowAdd adds x to the entity's bucket holding ts. A write to a bucket that has already
// expired (engine.BucketExpiry) fails with an error wrapping engine.ErrOutOfWindow; NaN and
// infinities fail with engine.ErrTypeMismatch, since one would poison the whole window, and
// so does an x that would take the bucket's sum to ±Inf (engine.ErrOverflow, checked under
// the shard's lock: the bucket is left as it was).
func (s *State) WindowAdd(_ context.Context, f *engine.Feature, keys string, x float64, ts time.Time) error {
	if err := s.check("window add", f, true); err != nil {
		return err
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return fmt.Errorf("memory: window add %s: %w: %v is not a value", f.FQN, engine.ErrTypeMismatch, x)
	}
	sh := s.shardFor(f.FQN, keys)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return s.windowAddLocked(sh, f, keys, x, ts)
}

// windowAddLocked is WindowAdd's write, under sh.mu held for writing; on an error nothing
// is written.
func (s *State) windowAddLocked(sh *shard, f *engine.Feature, keys string, x float64, ts time.Time) error {
	id := engine.BucketID(ts, f.Granularity)
	keep := firstKept(s.now().UnixNano(), f)
	if id < keep {
		return fmt.Errorf("memory: window add %s: %w: bucket of %s expired", f.FQN, engine.ErrOutOfWindow, ts.UTC().Format(time.RFC3339Nano))
	}
	ts = ts.Round(0) // drop the monotonic reading
	e := sh.getOrCreate(f, keys)
	e.dropBuckets(keep)
	if err := e.addToBucket(id, x, ts); err != nil {
		return fmt.Errorf("memory: window add %s: %w", f.FQN, err)
	}
	return nil
}

// WindowBuckets returns copies of the entity's unexpired buckets in span, sorted by ID, in
// one allocation; nil when there are none.
func (s *State) WindowBuckets(_ context.Context, f *engine.Feature, keys string, span engine.WindowSpan) ([]engine.Bucket, error) {
	if err := s.check("window buckets", f, true); err != nil {
		return nil, err
	}
	first := max(span.First, firstKept(s.now().UnixNano(), f))
	if first > span.Last {
		return nil, nil
	}
	sh := s.shardFor(f.FQN, keys)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e := sh.get(f.FQN, keys)
	if e == nil {
		return nil, nil
	}
	i, j := bucketRange(e.buckets, first, span.Last)
	if i == j {
		return nil, nil
	}
	return slices.Clone(e.buckets[i:j]), nil
}

// WindowAggregate folds the entity's buckets in span into one, under the shard's read lock,
// without copying them: the engine's push-down of a windowed read (engine.WindowAggregator).
func (s *State) WindowAggregate(_ context.Context, f *engine.Feature, keys string, span engine.WindowSpan) (engine.Bucket, error) {
	var acc engine.Bucket
	if err := s.check("window aggregate", f, true); err != nil {
		return acc, err
	}
	first := max(span.First, firstKept(s.now().UnixNano(), f))
	if first > span.Last {
		return acc, nil
	}
	sh := s.shardFor(f.FQN, keys)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e := sh.get(f.FQN, keys)
	if e == nil {
		return acc, nil
	}
	i, j := bucketRange(e.buckets, first, span.Last)
	for k := i; k < j; k++ {
		acc.Merge(e.buckets[k])
	}
	return acc, nil
}

// Drop removes every entity of f from every shard.
func (s *State) Drop(ctx context.Context, f *engine.Feature) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		delete(sh.features, f.FQN)
		sh.mu.Unlock()
	}
	s.mail.drop(f.FQN)
	return nil
}

// DeadWindowBuckets returns the unexpired buckets in span of every entity of a windowed
// feature. It walks only that feature's entities, one shard at a time, and stops with ctx's
// error if ctx ends between shards.
func (s *State) DeadWindowBuckets(ctx context.Context, f *engine.Feature, span engine.WindowSpan) ([]engine.RawBucket, error) {
	if err := s.check("dead window buckets", f, true); err != nil {
		return nil, err
	}
	first := max(span.First, firstKept(s.now().UnixNano(), f))
	if first > span.Last {
		return nil, nil
	}
	var out []engine.RawBucket
	for i := range s.shards {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("memory: dead window buckets %s: %w", f.FQN, err)
		}
		sh := &s.shards[i]
		sh.mu.RLock()
		if fe := sh.features[f.FQN]; fe != nil {
			for k, e := range fe.entries {
				i, j := bucketRange(e.buckets, first, span.Last)
				for _, b := range e.buckets[i:j] {
					out = append(out, engine.RawBucket{FQN: f.FQN, EncodedKeys: k, Bucket: b})
				}
			}
		}
		sh.mu.RUnlock()
	}
	return out, nil
}

// check fails after Close and when the call does not suit whether f is windowed.
func (s *State) check(op string, f *engine.Feature, windowed bool) error {
	if s.closed.Load() {
		return fmt.Errorf("memory: %s %s: %w", op, f.FQN, ErrClosed)
	}
	if f.Windowed() != windowed {
		if windowed {
			return fmt.Errorf("memory: %s %s: %w: the feature is not windowed", op, f.FQN, engine.ErrUnsupported)
		}
		return fmt.Errorf("memory: %s %s: %w: the feature is windowed (use the window calls)", op, f.FQN, engine.ErrUnsupported)
	}
	return nil
}

func typeError(op string, f *engine.Feature, v engine.Value) error {
	return fmt.Errorf("memory: %s %s: %w: got %s, want %s", op, f.FQN, engine.ErrTypeMismatch, v.Kind(), f.Primitive)
}

// shardFor returns the shard of an entity.
func (s *State) shardFor(fqn, keys string) *shard {
	h := maphash.String(s.seed, keys) ^ maphash.String(s.seed, fqn)
	return &s.shards[h&(numShards-1)]
}

// get returns an entity, or nil. The caller holds sh.mu.
func (sh *shard) get(fqn, keys string) *entry {
	fe := sh.features[fqn]
	if fe == nil {
		return nil
	}
	return fe.entries[keys]
}

// getOrCreate returns an entity, creating it if needed, and records f as the feature's
// latest descriptor. The caller holds sh.mu for writing.
func (sh *shard) getOrCreate(f *engine.Feature, keys string) *entry {
	fe := sh.features[f.FQN]
	if fe == nil {
		fe = &featureEntries{entries: make(map[string]*entry)}
		sh.features[strings.Clone(f.FQN)] = fe
	}
	fe.f = f
	e := fe.entries[keys]
	if e == nil {
		e = &entry{}
		// Clone: keys may point into a larger buffer (a request) the map must not retain.
		fe.entries[strings.Clone(keys)] = e
	}
	return e
}

// live reports whether the current value counts for an Append or Incr at t: it exists, has
// the feature's type, and is not stale relative to the write (t − staleness < its ts).
func (e *entry) live(f *engine.Feature, t int64) bool {
	return e.cur.Kind() == engine.Kind(f.Primitive) && e.ts > t-int64(f.Staleness)
}

// retained reports whether the current value counts for the event-time order of a Set at now
// (Unix ns): it exists, has the feature's type, and is younger than the age at which a State
// may forget it (staleness, or max(staleness, KeepPrevious.Over) when it may still become a
// previous version). A value past that age is treated as absent whether or not the janitor
// has deleted it yet, so the janitor never changes a Set's outcome.
func (e *entry) retained(f *engine.Feature, now int64) bool {
	keep := f.Staleness
	if kp := f.KeepPrevious; kp != nil {
		keep = max(keep, kp.Over)
	}
	return e.cur.Kind() == engine.Kind(f.Primitive) && e.ts > now-int64(keep)
}

// insertPrevious puts a superseded value among the previous versions in timestamp order (of
// equal timestamps, the later written is the newer) and reports whether it was kept: not
// when the feature keeps no previous values, when it is KeepPrevious.Over old at now, or
// when Versions newer ones are kept. The history is sorted by timestamp, oldest first in ring
// order, because every value entering it is either the replaced current value (never older
// than what came before it) or inserted here in order.
func (e *entry) insertPrevious(f *engine.Feature, p stamped, now int64) bool {
	kp := f.KeepPrevious
	if kp == nil {
		e.hist, e.next = nil, 0
		return false
	}
	if p.ts <= now-int64(kp.Over) {
		return false
	}
	n := kp.Versions
	e.linearize(n)
	i := len(e.hist)
	for i > 0 && e.hist[i-1].ts > p.ts {
		i--
	}
	if len(e.hist) == n && i == 0 {
		return false // older than every one of the Versions kept
	}
	e.hist = slices.Insert(e.hist, i, p)
	if len(e.hist) > n {
		e.hist = slices.Delete(e.hist, 0, len(e.hist)-n)
	}
	return true
}

// pushCurrent moves the current value into the history before it is replaced, when the
// feature keeps previous values (and drops the history when it no longer does).
func (e *entry) pushCurrent(f *engine.Feature) {
	kp := f.KeepPrevious
	if kp == nil {
		e.hist, e.next = nil, 0
		return
	}
	if e.cur.Kind() != engine.Kind(f.Primitive) {
		return // none, or left over from a feature of another type
	}
	p := stamped{e.cur, e.ts}
	n := kp.Versions
	if len(e.hist) > n || (len(e.hist) < n && e.next != 0) {
		e.linearize(n) // Versions changed since the ring filled
	}
	if len(e.hist) < n {
		e.hist = append(e.hist, p)
		return
	}
	e.hist[e.next] = p
	e.next = (e.next + 1) % n
}

// linearize reorders the history oldest first, keeping its newest n entries.
func (e *entry) linearize(n int) {
	h := make([]stamped, 0, len(e.hist))
	h = append(h, e.hist[e.next:]...)
	h = append(h, e.hist[:e.next]...)
	if len(h) > n {
		h = h[len(h)-n:]
	}
	e.hist, e.next = h, 0
}

// prev returns the nth previous value (n ≥ 1).
func (e *entry) prev(n int) (stamped, bool) {
	l := len(e.hist)
	if n > l {
		return stamped{}, false
	}
	return e.hist[((e.next-n)%l+l)%l], true
}

// firstKept returns the ID of the oldest bucket of f not yet expired at now (Unix ns):
// engine.BucketExpiry(id) > now ⟺ id ≥ ⌊(now − staleness − DeadGracePeriod) / granularity⌋.
func firstKept(now int64, f *engine.Feature) int64 {
	return floorDiv(now-int64(f.Staleness)-int64(engine.DeadGracePeriod), int64(f.Granularity))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// bucketRange returns the bounds [i, j) of the buckets with IDs in [first, last].
func bucketRange(bs []engine.Bucket, first, last int64) (int, int) {
	i, _ := slices.BinarySearchFunc(bs, first, cmpBucket)
	j := i
	for j < len(bs) && bs[j].ID <= last {
		j++
	}
	return i, j
}

func cmpBucket(b engine.Bucket, id int64) int { return cmp.Compare(b.ID, id) }

// dropBuckets drops the buckets with IDs below keep.
func (e *entry) dropBuckets(keep int64) {
	if len(e.buckets) == 0 || e.buckets[0].ID >= keep {
		return
	}
	i, _ := slices.BinarySearchFunc(e.buckets, keep, cmpBucket)
	e.buckets = slices.Delete(e.buckets, 0, i)
}

// addToBucket adds x at ts to bucket id, creating it in order. It fails with
// engine.ErrOverflow, changing nothing, when the bucket's sum would leave the float range.
func (e *entry) addToBucket(id int64, x float64, ts time.Time) error {
	n := len(e.buckets)
	i, found := n-1, n > 0 && e.buckets[n-1].ID == id // the common case: the newest bucket
	if !found {
		i, found = slices.BinarySearchFunc(e.buckets, id, cmpBucket)
	}
	var sum float64
	if found {
		sum = e.buckets[i].Sum
	}
	if s := sum + x; math.IsInf(s, 0) {
		return fmt.Errorf("%w: the bucket's sum %v + %v is not a finite float", engine.ErrOverflow, sum, x)
	}
	if !found {
		e.buckets = slices.Insert(e.buckets, i, engine.Bucket{ID: id})
	}
	e.buckets[i].Add(x, ts)
	return nil
}

// appendList returns cur (a list of primitive p, or Null for an empty one) with the
// elements of add appended, and the backing buffer to keep for the next append. buf is the
// buffer returned with cur by the previous append, or nil.
func appendList(p engine.Primitive, cur engine.Value, buf any, add engine.Value) (engine.Value, any) {
	switch p {
	case engine.PrimitiveIntList:
		l, b := grow(buf, cur.Ints(), add.Ints())
		return engine.IntList(l), b
	case engine.PrimitiveFloatList:
		l, b := grow(buf, cur.Floats(), add.Floats())
		return engine.FloatList(l), b
	case engine.PrimitiveStringList:
		l, b := grow(buf, cur.Strs(), add.Strs())
		return engine.StringList(l), b
	case engine.PrimitiveBoolList:
		l, b := grow(buf, cur.Bools(), add.Bools())
		return engine.BoolList(l), b
	case engine.PrimitiveTimestampList:
		l, b := grow(buf, cur.Times(), add.Times())
		return engine.TimestampList(l), b
	}
	panic(fmt.Sprintf("memory: appendList of %s", p)) // callers check IsList
}

// grow appends add to cur without touching any element a Value handed out may hold.
//
// When buf is the store's own backing array of cur (it starts at cur's first element) and
// has room, the new elements go into its unused tail, which no Value reaches: every Value
// sharing the array is a prefix no longer than cur, clipped to its length. Otherwise grow
// copies into a new array with room to spare (amortised growth). The result is clipped.
func grow[T any](buf any, cur, add []T) ([]T, any) {
	n := len(cur) + len(add)
	if n == 0 {
		return []T{}, nil
	}
	if b, ok := buf.([]T); ok && len(cur) > 0 && len(b) >= n && &b[0] == &cur[0] {
		copy(b[len(cur):n], add)
		return b[:n:n], buf
	}
	nb := append(cur[:len(cur):len(cur)], add...) // clipped: always copies when add is non-empty
	nb = nb[:cap(nb)]
	return nb[:n:n], nb
}
