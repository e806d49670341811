package historian

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// Defaults of Config.
const (
	DefaultGroup           = "historian"
	DefaultFlushRecords    = 100_000
	DefaultFlushAge        = 5 * time.Second
	DefaultMaxPending      = 1_000_000
	DefaultCollectInterval = time.Minute
	DefaultPutTimeout      = 30 * time.Second
	// FlushParallelism is how many flushes run at once: a flush waits mostly on its Puts
	// (an fsync, an S3 round trip), so several overlap.
	FlushParallelism = 4
)

// Config configures a Historian. Engine, Notifier and Storage are required.
type Config struct {
	// Engine gives the features' descriptors (keys, primitive, windows) and reads the
	// buckets the historian snapshots and collects.
	Engine *engine.Engine
	// Notifier delivers the write notifications; it must be an engine.BatchSubscriber.
	Notifier engine.Notifier
	// Storage is where the objects are written.
	Storage Storage
	// Leader, when set, makes this historian write only while it leads (a lock shared by
	// the replicas: one writer at a time), with the leader's fencing token in every record
	// and object name. Nil: no lock, fence 0 (the embedded default: one process).
	Leader Leader
	// Group is the notifier's consumer group (DefaultGroup when empty). Declare it on the
	// notifier from the start (its WithGroups option) so that nothing written before the
	// historian first subscribes is missed.
	Group string
	// FlushRecords flushes the buffer when it holds this many notifications
	// (DefaultFlushRecords when 0); FlushAge when its oldest is this old (DefaultFlushAge).
	FlushRecords int
	FlushAge     time.Duration
	// MaxPending bounds the notifications received and not yet written (DefaultMaxPending):
	// beyond it the historian stops taking notifications (back-pressure, see
	// docs/history.md) until a flush succeeds.
	MaxPending int
	// CollectInterval is how often the buckets that left their windows are collected as
	// final records (DefaultCollectInterval; it must be well under engine.DeadGracePeriod).
	CollectInterval time.Duration
	// PutTimeout bounds one object's Put (DefaultPutTimeout).
	PutTimeout time.Duration
	// Logger logs flushes, failures and leadership (slog.Default() when nil).
	Logger *slog.Logger
	// Now is the clock of write times of bucket records and of object names (time.Now when
	// nil).
	Now func() time.Time
}

// Stats are a historian's counters since it was made.
type Stats struct {
	Received       int64 // notifications received
	Records        int64 // records written
	Objects        int64 // objects written
	Bytes          int64 // bytes written
	Flushes        int64 // flushes that wrote everything they held
	FailedPuts     int64 // Puts that failed (and were retried)
	Pending        int64 // notifications received and not yet written
	FinalBuckets   int64 // final bucket records collected
	LeaderTerms    int64 // times this historian became the leader
	Skipped        int64 // writes delivered again that an earlier leader had written
	Unencodable    int64 // records dropped because they could not be encoded (logged)
	Unknown        int64 // writes dropped for a feature not applied (deleted since; logged)
	LastFlushError string
}

// Historian writes every change to the features as Parquet objects in a Storage; see the
// package documentation and docs/history.md. Run runs it; it is safe for concurrent use.
type Historian struct {
	cfg   Config
	sub   engine.BatchSubscriber
	log   *slog.Logger
	now   func() time.Time
	runID string

	mu        sync.Mutex
	buf       []engine.Notification
	dones     []func(error)
	oldest    time.Time
	full      chan struct{} // poked when the buffer reaches FlushRecords
	fmu       sync.Mutex    // guards running
	idle      *sync.Cond    // signalled when running drops to 0
	running   int           // flushes running
	collectMu sync.Mutex    // one Collect at a time
	fence     atomic.Int64
	seq       atomic.Uint64

	collected map[string]int64 // fqn → last bucket ID collected as final

	// written holds the writes earlier leaders wrote recently, until writtenUntil (see
	// takeover.go); under mu.
	written      map[string]struct{}
	writtenUntil time.Time
	recalling    atomic.Bool // written is set
	skipped      atomic.Int64
	unencodable  atomic.Int64
	unknown      atomic.Int64

	received, records, objects, bytes, flushes, failedPuts, pending, finals, terms atomic.Int64
	lastErr                                                                        atomic.Value // string
}

// New returns a Historian; call Run to start it.
func New(cfg Config) (*Historian, error) {
	if cfg.Engine == nil || cfg.Notifier == nil || cfg.Storage == nil {
		return nil, errors.New("historian: Config.Engine, Notifier and Storage are required")
	}
	sub, ok := cfg.Notifier.(engine.BatchSubscriber)
	if !ok {
		return nil, fmt.Errorf("historian: the notifier (%T) cannot deliver in batches (engine.BatchSubscriber)", cfg.Notifier)
	}
	if cfg.FlushRecords < 0 || cfg.FlushAge < 0 || cfg.MaxPending < 0 || cfg.CollectInterval < 0 || cfg.PutTimeout < 0 {
		return nil, errors.New("historian: negative FlushRecords, FlushAge, MaxPending, CollectInterval or PutTimeout")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	def(&cfg.FlushRecords, DefaultFlushRecords)
	def(&cfg.MaxPending, DefaultMaxPending)
	defd(&cfg.FlushAge, DefaultFlushAge)
	defd(&cfg.CollectInterval, DefaultCollectInterval)
	defd(&cfg.PutTimeout, DefaultPutTimeout)
	cfg.MaxPending = max(cfg.MaxPending, cfg.FlushRecords)
	if cfg.CollectInterval >= engine.DeadGracePeriod/2 {
		return nil, fmt.Errorf("historian: CollectInterval %v: must be under half the grace period buckets are kept for (%v)", cfg.CollectInterval, engine.DeadGracePeriod)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var id [4]byte
	_, _ = rand.Read(id[:])
	h := &Historian{cfg: cfg, sub: sub, log: cfg.Logger, now: cfg.Now, runID: hex.EncodeToString(id[:]),
		full: make(chan struct{}, 1), collected: map[string]int64{}}
	h.idle = sync.NewCond(&h.fmu)
	return h, nil
}

// Stats returns the counters.
func (h *Historian) Stats() Stats {
	s := Stats{Received: h.received.Load(), Records: h.records.Load(), Objects: h.objects.Load(), Bytes: h.bytes.Load(),
		Flushes: h.flushes.Load(), FailedPuts: h.failedPuts.Load(), Pending: h.pending.Load(), FinalBuckets: h.finals.Load(),
		LeaderTerms: h.terms.Load(), Skipped: h.skipped.Load(), Unencodable: h.unencodable.Load(),
		Unknown: h.unknown.Load()}
	s.LastFlushError, _ = h.lastErr.Load().(string)
	return s
}

// Run writes history until ctx ends, then flushes what it holds and returns ctx's error.
// With a Leader it first waits to lead, writes while it leads, and waits again when it
// loses the lead; what it held when it lost it is not written (the next leader is delivered
// it again). Without one it writes from the start.
func (h *Historian) Run(ctx context.Context) error {
	for {
		lease, err := h.lead(ctx)
		if err != nil {
			return err
		}
		h.fence.Store(lease.Fence)
		h.terms.Add(1)
		err = h.term(ctx, lease)
		lease.Release()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.log.LogAttrs(ctx, slog.LevelWarn, "historian: the subscription ended; subscribing again", slog.Any("error", err))
		select { // a notifier that keeps failing (closed, say) is not retried in a loop
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// lead waits until this historian may write: at once without a Leader (a lease that never
// ends but with ctx).
func (h *Historian) lead(ctx context.Context) (Lease, error) {
	if h.cfg.Leader == nil {
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		return Lease{Context: lctx, Until: func() time.Time { return time.Now().Add(h.cfg.PutTimeout) }, Release: cancel}, nil
	}
	lease, err := h.cfg.Leader.Lead(ctx)
	if err != nil {
		return Lease{}, err
	}
	h.log.LogAttrs(ctx, slog.LevelInfo, "historian: leading", slog.Int64("fence", lease.Fence))
	return lease, nil
}

// term runs one term of writing — the subscription, the flusher and the collector — until
// ctx ends (a clean stop) or the lease does (lost). On a clean stop the running flushes and
// a final one write what is held, under the lease, within PutTimeout; what cannot be
// written then is given back. On a lost lease nothing more is written: it is all given back.
func (h *Historian) term(ctx context.Context, lease Lease) error {
	if h.cfg.Leader != nil {
		h.recall(lease.Context, lease.Fence)
	}
	// Writes run under wctx: the lease's, so that a lost lease stops them at once, ended
	// PutTimeout after a clean stop at the latest.
	wctx, wcancel := context.WithCancel(lease.Context)
	defer wcancel()
	sctx, cancel := context.WithCancel(lease.Context)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { h.flushLoop(sctx, wctx) })
	wg.Go(func() { h.collectLoop(sctx) })
	err := h.sub.SubscribeBatches(sctx, h.cfg.Group, engine.BatchOptions{MaxBatch: 4096, MaxPending: h.cfg.MaxPending}, h.take)
	cancel()
	wg.Wait()
	if errors.Is(context.Cause(lease.Context), ErrLostLead) {
		wcancel()
		h.waitFlushes() // they fail (their context ended) and put their records back
		h.giveBack(errors.New("historian: lost the lead"))
		return err
	}
	until := time.Now().Add(h.cfg.PutTimeout)
	if u := lease.Until(); u.Before(until) {
		until = u
	}
	timer := time.AfterFunc(time.Until(until), wcancel)
	defer timer.Stop()
	h.waitFlushes()
	if ferr := h.flush(wctx, true); ferr != nil {
		h.giveBack(ferr)
	}
	return err
}

// take is the SubscribeBatches handler: it buffers the batch and returns.
func (h *Historian) take(_ context.Context, batch []engine.Notification, done func(error)) {
	h.mu.Lock()
	if len(h.buf) == 0 {
		h.oldest = time.Now()
	}
	h.buf = append(h.buf, batch...)
	h.dones = append(h.dones, done)
	n := len(h.buf)
	h.mu.Unlock()
	h.received.Add(int64(len(batch)))
	h.pending.Add(int64(len(batch)))
	if n >= h.cfg.FlushRecords {
		select {
		case h.full <- struct{}{}:
		default:
		}
	}
}

// giveBack fails every buffered batch back to the notifier, to be delivered again.
func (h *Historian) giveBack(err error) {
	h.mu.Lock()
	buf, dones := h.buf, h.dones
	h.buf, h.dones = nil, nil
	h.mu.Unlock()
	h.pending.Add(-int64(len(buf)))
	for _, d := range dones {
		d(err)
	}
}

// flushLoop starts flushes until ctx ends; they write under wctx.
func (h *Historian) flushLoop(ctx, wctx context.Context) {
	tick := time.NewTicker(max(h.cfg.FlushAge/4, 10*time.Millisecond))
	defer tick.Stop()
	sem := make(chan struct{}, FlushParallelism)
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.full:
		case <-tick.C:
			h.mu.Lock()
			due := len(h.buf) > 0 && time.Since(h.oldest) >= h.cfg.FlushAge
			h.mu.Unlock()
			if !due {
				continue
			}
		}
		// Take the buffer once a flush may start, so that it grows while the others run.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		buf, dones := h.takeBuffer()
		if len(buf) == 0 {
			<-sem
			continue
		}
		h.flushStarted()
		go func() {
			defer func() { <-sem; h.flushEnded() }()
			_ = h.write(wctx, buf, dones, false)
		}()
		h.mu.Lock()
		again := len(h.buf) >= h.cfg.FlushRecords
		h.mu.Unlock()
		if again {
			select {
			case h.full <- struct{}{}:
			default:
			}
		}
	}
}

// Flush writes everything buffered now, after the flushes already running. It returns when
// it is written (and acknowledged), or with the error of the first failed Put; what was not
// written stays buffered, to be written by the next flush.
func (h *Historian) Flush(ctx context.Context) error { return h.flush(ctx, true) }

// flush waits for the running flushes, then writes the buffer (once: give up after the
// first round of failures instead of retrying).
func (h *Historian) flush(ctx context.Context, once bool) error {
	h.waitFlushes()
	buf, dones := h.takeBuffer()
	if len(buf) == 0 {
		return nil
	}
	return h.write(ctx, buf, dones, once)
}

// flushStarted, flushEnded and waitFlushes count the flushes running (a WaitGroup would not
// do: Flush may wait while the flush loop starts another).
func (h *Historian) flushStarted() {
	h.fmu.Lock()
	h.running++
	h.fmu.Unlock()
}

func (h *Historian) flushEnded() {
	h.fmu.Lock()
	h.running--
	if h.running == 0 {
		h.idle.Broadcast()
	}
	h.fmu.Unlock()
}

func (h *Historian) waitFlushes() {
	h.fmu.Lock()
	for h.running > 0 {
		h.idle.Wait()
	}
	h.fmu.Unlock()
}

// takeBuffer takes the buffered notifications and their dones.
func (h *Historian) takeBuffer() ([]engine.Notification, []func(error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	buf, dones := h.buf, h.dones
	h.buf, h.dones = nil, nil
	return buf, dones
}

// write writes buf as objects, retrying failed Puts with back-off until they succeed or
// ctx ends (or once), then acknowledges it; when it fails, buf goes back to the head of
// the buffer.
func (h *Historian) write(ctx context.Context, buf []engine.Notification, dones []func(error), once bool) error {
	objs, err := h.build(ctx, buf)
	if err == nil {
		err = h.putAll(ctx, objs, once)
	}
	if err == nil && h.cfg.Leader != nil {
		h.putFlushManifest(ctx, objs)
	}
	if err != nil {
		h.lastErr.Store(err.Error())
		// The next flush writes these (and what came since) again; objects already
		// written are written again under new names (duplicates, never loss;
		// docs/history.md says how to drop them).
		h.mu.Lock()
		h.buf = append(buf, h.buf...)
		h.dones = append(dones, h.dones...)
		h.oldest = time.Now().Add(-h.cfg.FlushAge)
		h.mu.Unlock()
		return err
	}
	h.pending.Add(-int64(len(buf)))
	h.flushes.Add(1)
	for _, d := range dones {
		d(nil)
	}
	return nil
}

// object is one object to write.
type object struct {
	key     string
	body    []byte
	records int
}

// putAll writes the objects, retrying each with back-off until ctx ends (or once).
func (h *Historian) putAll(ctx context.Context, objs []*object, once bool) error {
	backoff := 100 * time.Millisecond
	for len(objs) > 0 {
		o := objs[0]
		pctx, cancel := context.WithTimeout(ctx, h.cfg.PutTimeout)
		err := h.cfg.Storage.Put(pctx, o.key, o.body)
		cancel()
		if err == nil {
			h.objects.Add(1)
			h.records.Add(int64(o.records))
			h.bytes.Add(int64(len(o.body)))
			objs = objs[1:]
			backoff = 100 * time.Millisecond
			continue
		}
		h.failedPuts.Add(1)
		err = fmt.Errorf("historian: put %s: %w", o.key, err)
		if once || ctx.Err() != nil {
			return err
		}
		h.lastErr.Store(err.Error())
		h.log.LogAttrs(ctx, slog.LevelWarn, "historian: write failed; retrying", slog.Duration("in", backoff), slog.Any("error", err))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	return nil
}

// build turns notifications into objects: one per feature and date of event time.
// Windowed writes become one snapshot per bucket touched, read from the State now.
func (h *Historian) build(ctx context.Context, notes []engine.Notification) ([]*object, error) {
	fence := h.fence.Load()
	written := h.now()
	type bucketKey struct {
		fqn, keys string
		id        int64
	}
	byFeature := map[string][]Record{}
	features := map[string]*engine.Feature{}
	seen := map[bucketKey]bool{}
	feature := func(fqn string) *engine.Feature {
		f, ok := features[fqn]
		if !ok {
			f, _ = h.cfg.Engine.FeatureDescriptor(ctx, fqn) // nil: deleted since; skipped
			features[fqn] = f
		}
		return f
	}
	for _, n := range notes {
		if n.Kind != engine.NotifyWrite {
			continue
		}
		f := feature(n.FQN)
		if f == nil {
			// Not applied here: not yet (another replica applied it, and this one's
			// registry has not caught up — it does within seconds), or deleted since.
			// A recent write waits for the first; an older one is taken for the second.
			if written.Sub(n.Written) < unknownFeatureGrace {
				return nil, fmt.Errorf("%w: %s (written %v ago)", errUnknownFeature, n.FQN, written.Sub(n.Written).Round(time.Millisecond))
			}
			h.unknown.Add(1)
			h.log.LogAttrs(ctx, slog.LevelWarn, "historian: a write to a feature not applied here (deleted since?) is not recorded",
				slog.String("fqn", n.FQN), slog.Time("written", n.Written))
			continue
		}
		keys, err := keyValues(f, n.EncodedKeys)
		if err != nil {
			h.log.LogAttrs(ctx, slog.LevelError, "historian: dropping a notification whose keys do not decode",
				slog.String("fqn", n.FQN), slog.Any("error", err))
			continue
		}
		rec := Record{FQN: f.FQN, Primitive: f.Primitive, KeyNames: f.Keys, Keys: keys, EncodedKeys: n.EncodedKeys,
			Op: n.Op, Fence: fence}
		if n.Windowed {
			// The add itself, so that a window can be recomputed as of any instant (the
			// export does), and its bucket's snapshot, once per batch.
			add := rec
			add.Kind, add.Value, add.EventTime, add.WriteTime = KindWrite, addValue(f, n.Value), n.Timestamp, n.Written
			if h.alreadyWritten(&add) {
				h.skipped.Add(1)
			} else {
				byFeature[f.FQN] = append(byFeature[f.FQN], add)
			}
			k := bucketKey{n.FQN, n.EncodedKeys, n.Bucket}
			if seen[k] {
				continue
			}
			seen[k] = true
			b, ok, err := h.bucket(ctx, f, n.EncodedKeys, n.Bucket)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue // expired before it could be read
			}
			rec.Kind, rec.Op, rec.WriteTime = KindBucketSnapshot, engine.OpUpdate, written
			rec.EventTime = b.Updated
			rec.Bucket = bucketRecord(f, b, engine.AliveSpan(written, f.Staleness, f.Granularity).Contains(b.ID))
		} else {
			rec.Kind, rec.Value, rec.EventTime, rec.WriteTime = KindWrite, n.Value, n.Timestamp, n.Written
			rec.Superseded = n.Outcome == engine.WriteSuperseded
			if h.alreadyWritten(&rec) {
				h.skipped.Add(1)
				continue
			}
		}
		byFeature[f.FQN] = append(byFeature[f.FQN], rec)
	}
	return h.objectsOf(byFeature)
}

// unknownFeatureGrace is how long after a write to a feature this replica does not know the
// historian waits for its registry to catch up, before taking the feature for deleted.
const unknownFeatureGrace = 30 * time.Second

var errUnknownFeature = errors.New("historian: a write to a feature not applied here yet")

// addValue is a window add's value as the feature's primitive: the notifier carries the
// number added as a float; an int feature's adds are ints.
func addValue(f *engine.Feature, v engine.Value) engine.Value {
	if x, ok := v.Number(); ok && f.Primitive == engine.PrimitiveInt {
		return engine.Int(int64(x))
	}
	return v
}

// objectsOf encodes records, one object per feature and event date. A record that cannot be
// encoded — never transient: a bug or a value the schema cannot hold — is logged and
// dropped, counted in Stats.Unencodable, rather than failing the whole flush for ever; the
// others are written.
func (h *Historian) objectsOf(byFeature map[string][]Record) ([]*object, error) {
	fqns := make([]string, 0, len(byFeature))
	for fqn := range byFeature {
		fqns = append(fqns, fqn)
	}
	sort.Strings(fqns)
	var out []*object
	for _, fqn := range fqns {
		byDate := map[string][]Record{}
		for _, r := range byFeature[fqn] {
			d := r.EventTime.UTC().Format(time.DateOnly)
			byDate[d] = append(byDate[d], r)
		}
		dates := make([]string, 0, len(byDate))
		for d := range byDate {
			dates = append(dates, d)
		}
		sort.Strings(dates)
		for _, d := range dates {
			recs := byDate[d]
			var buf bytes.Buffer
			if err := EncodeParquet(&buf, recs); err != nil {
				// Find the records at fault, one by one (a rare path), and write the rest.
				good := recs[:0:0]
				for _, r := range recs {
					if rerr := EncodeParquet(io.Discard, []Record{r}); rerr != nil {
						h.unencodable.Add(1)
						h.log.LogAttrs(context.Background(), slog.LevelError, "historian: a record that cannot be encoded is dropped",
							slog.String("fqn", fqn), slog.String("keys", r.EncodedKeys), slog.Any("error", rerr))
						continue
					}
					good = append(good, r)
				}
				buf.Reset()
				if len(good) == 0 {
					continue
				}
				if err := EncodeParquet(&buf, good); err != nil {
					return nil, fmt.Errorf("historian: encode %s %s: %w", fqn, d, err)
				}
				recs = good
			}
			out = append(out, &object{key: h.objectKey(fqn, d), body: buf.Bytes(), records: len(recs)})
		}
	}
	return out, nil
}

// objectKey names an object: unique per batch (time, fence, this process's run ID and a
// sequence number), so no two writes of the historian ever share a key.
func (h *Historian) objectKey(fqn, date string) string {
	return ObjectKey(fqn, date, h.now().UTC().Format("20060102T150405.000000000Z")+"-"+
		strconv.FormatInt(h.fence.Load(), 10)+"-"+h.runID+"-"+strconv.FormatUint(h.seq.Add(1), 10))
}

// ObjectKey is the key of an object of feature fqn for event date (YYYY-MM-DD) named name:
// fqn=<fqn>/date=<date>/<name>.parquet (Hive-style partitions).
func ObjectKey(fqn, date, name string) string {
	return "fqn=" + fqn + "/date=" + date + "/" + name + ".parquet"
}

// bucket reads one bucket of an entity's window.
func (h *Historian) bucket(ctx context.Context, f *engine.Feature, ekeys string, id int64) (engine.Bucket, bool, error) {
	bs, err := h.cfg.Engine.State().WindowBuckets(ctx, f, ekeys, engine.WindowSpan{First: id, Last: id})
	if err != nil {
		return engine.Bucket{}, false, fmt.Errorf("historian: read bucket %d of %s %s: %w", id, f.FQN, ekeys, err)
	}
	for _, b := range bs {
		if b.ID == id && b.Count > 0 {
			return b, true, nil
		}
	}
	return engine.Bucket{}, false, nil
}

func bucketRecord(f *engine.Feature, b engine.Bucket, open bool) *BucketRecord {
	start := time.Unix(0, b.ID*int64(f.Granularity)).UTC()
	return &BucketRecord{ID: b.ID, Start: start, End: start.Add(f.Granularity), Open: open,
		Sum: b.Sum, Count: b.Count, Min: b.Min, Max: b.Max}
}

// keyValues decodes an entity's keys in the feature's key order.
func keyValues(f *engine.Feature, encoded string) ([]string, error) {
	return engine.DecodeKeyValues(make([]string, 0, len(f.Keys)), f.Keys, encoded)
}
