// Package redis is Osprey's Redis state store, registered with the plugins registry as
// "redis". It runs against a standalone server, a Redis Cluster or a Sentinel-managed
// master (go-redis's UniversalClient), and passes the State conformance suite
// (engine/statetest) on a standalone server and on a three-master Cluster.
//
// # Key layout
//
// Every key of an entity — a feature FQN and its encoded keys (engine.EncodeKeys) — starts
// with the same tag
//
//	osp:{<fqn>|<encoded keys>
//
// and ends in a suffix naming its part:
//
//	osp:{<fqn>|<keys>}:v   string  the current value: kind byte, timestamp, value
//	osp:{<fqn>|<keys>}:p   list    previous versions, newest first, each packed as :v is
//	osp:{<fqn>|<keys>}:w   string  window buckets: 48-byte records sorted by bucket ID, each the
//	                               ID, sum, count, min, max and latest update's timestamp
//	osp:{<fqn>|<keys>}:x   string  scratch of an int Incr; exists only inside its script
//	osp:{<fqn>|<keys>}:s   hash    the program's storage of the address (engine.StorageState):
//	                               one field per storage name, its value packed as :v is with
//	                               its expiry in the timestamp's place (all f: never), and
//	                               the field #v, the address's version
//
// An FQN cannot contain '|', so the FQN ends at the first one and two features never share
// a key, whatever their key names or values. The Cluster hash tag is the text between the
// first '{' and the first '}' after it; it always lies within the common start above (an
// encoded key containing '}' only ends it sooner), so all of an entity's keys live in one
// hash slot and each script touches one slot.
//
// A packed value is one byte for its kind ('a' + the primitive's number; a value of another
// kind, left by a feature deleted and applied again with another type, counts as absent),
// 16 hex digits of its Unix nanoseconds with the sign bit flipped (they sort as strings as
// the times do, which is how the scripts compare timestamps exactly: Lua numbers are
// float64), and the value (see encodeValue: lists are the concatenation of their elements,
// so an Append is a string concatenation). Each read is one command: GET of :v for the
// current value, LINDEX of :p for a previous one, GET of :w for a window's buckets, which a
// windowed read merges as it decodes them (engine.WindowAggregator). A batch of reads
// (engine.BatchReader, a GetMany's feature vector) is one round trip: off a Cluster, its
// GETs are one MGET and its LINDEXes ride in the same pipeline; on a Cluster, where an MGET
// cannot span slots, each cell is its own command in a pipeline that the client splits per
// node: one round trip per node for the batch. A batch of writes (engine.BatchWriter, an
// Ingest's values) is likewise one pipeline of the scripts the single writes run.
//
// A bucket record is 48 bytes: the bucket ID and the latest update's Unix ns as 8
// big-endian bytes with the sign bit flipped (so that they compare as byte strings, exactly,
// in Lua), and sum, count, min and max as little-endian float64s (Lua's struct.pack). The
// records of live buckets are few (a window's worth plus engine.DeadGracePeriod's), dense
// and sorted, so a write to the newest bucket is a SETRANGE in place and a new bucket an
// APPEND.
//
// # Expiry
//
// Keys carry TTLs so that Redis forgets what Osprey would never serve: :v expires
// staleness after its timestamp (max(staleness, KeepPrevious.Over) with KeepPrevious, since
// it may still become a previous version), :p KeepPrevious.Over after its newest entry, and
// :w at the engine.BucketExpiry of its latest bucket (staleness + engine.DeadGracePeriod
// after the bucket ends); buckets expired within a live hash are deleted by the next
// WindowAdd. Reads apply the exact ages against time.Now on top, as engine.State requires.
// A storage hash (:s) expires the millisecond after its latest value's Expires, or never
// while one of its values never expires; each commit sets it again, deletes the values
// already expired, and deletes the hash when none is left alive (its version then reads ""
// again, as before the first commit: versions are random 64-bit tokens, so a version once
// seen does not come back). LoadStorage applies the exact Expires against the now it is
// given.
//
// # Atomic writes
//
// Set (with its event-time order, KeepPrevious and the superseded decision), Append, Incr
// (with overflow refusal: INCRBY on a scratch key is exact over int64 and refuses to
// overflow) and WindowAdd (min, max and the overflow check) are Lua scripts, sent once and
// then called by SHA (see RATIONALE.md for why scripts rather than MULTI).
//
// A program's storage commit (CommitStorage) is one script too, commitStorageScript: it
// compares the version (engine.ErrConflict when it moved), runs the value write as the
// Set, Append or WindowAdd script's own Lua function (shared source, so the event-time rules
// are the same code), returns before touching the storage when that write is refused (a
// window add's overflow; wrong kinds and expired buckets are refused in Go, before the
// script), then applies the storage's sets, clears and touches, the new version and the
// TTL. Every key it touches (:s and :v, :p or :w) is in the entity's slot. LoadStorage is
// one HGETALL. (WATCH/MULTI around the write scripts measured slower, and EXEC could not
// skip the storage when the write's script refuses: see RATIONALE.md.)
//
// # Drop
//
// Drop SCANs for the feature's keys in batches (MATCH osp:{<fqn>|*, which :s matches like
// the others) and UNLINKs them, on every master of a Cluster, so it never blocks the server
// the way KEYS or DEL of a large value would.
//
// The State does I/O and so does not implement engine.Blocker. Calls honour their context's
// deadline (ContextTimeoutEnabled); a server out of reach fails with an error wrapping the
// net.Error or syscall error, which the server answers as Unavailable.
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
)

func init() {
	plugins.RegisterState("redis", newFromConfig)
}

// configKeys are the keys newFromConfig reads.
var configKeys = []string{"url", "addrs", "username", "password", "db", "tls", "tls-insecure",
	"pool-size", "dial-timeout", "read-timeout", "write-timeout", "master-name", "cluster", "max-retries"}

// Options returns go-redis UniversalOptions from a plugin Config:
//
//	url            redis://[user:password@]host:port[/db] or rediss://… (TLS); the keys
//	               below override what it says
//	addrs          host:port separated by ',', ';' or spaces (default 127.0.0.1:6379); several
//	               without master-name: a Cluster (on the osprey serve command line, where
//	               --state-config splits on ',', write addrs=a:6379;b:6379)
//	username, password, db
//	tls            true to connect with TLS; tls-insecure skips verifying the certificate
//	pool-size      connections per node (go-redis's default: 10 per CPU)
//	dial-timeout, read-timeout, write-timeout  durations (go-redis's defaults: 5s, 3s, 3s)
//	master-name    the Sentinel master name; addrs are then the Sentinels
//	cluster        true for a Cluster reached through a single address
//	max-retries    how often go-redis retries a command after a network error (default 0:
//	               never, since Incr, Append and a window add are not idempotent: a retry
//	               after the server ran the script but the reply was lost would count twice)
func Options(cfg plugins.Config) (*goredis.UniversalOptions, error) {
	if err := cfg.Check(configKeys...); err != nil {
		return nil, err
	}
	// One dial attempt: go-redis's default of 5, 100 ms apart, outlasts a feature's timeout,
	// which would turn a refused connection (Unavailable) into a deadline exceeded. The pool
	// redials in the background after failures, so service resumes when the server returns.
	o := &goredis.UniversalOptions{ContextTimeoutEnabled: true, DialerRetries: 1}
	if u := cfg.String("url", ""); u != "" {
		po, err := goredis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", plugins.ErrInvalidConfig, "url", err)
		}
		o.Addrs, o.Username, o.Password, o.DB, o.TLSConfig = []string{po.Addr}, po.Username, po.Password, po.DB, po.TLSConfig
		if po.PoolSize > 0 {
			o.PoolSize = po.PoolSize
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = po.DialTimeout, po.ReadTimeout, po.WriteTimeout
	}
	if a := cfg.String("addrs", ""); a != "" {
		// ';' and spaces too: osprey serve's --state-config already splits on ','.
		o.Addrs = strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ';' || r == ' ' })
	}
	if len(o.Addrs) == 0 {
		o.Addrs = []string{"127.0.0.1:6379"}
	}
	o.Username = cfg.String("username", o.Username)
	o.Password = cfg.String("password", o.Password)
	o.MasterName = cfg.String("master-name", "")
	var err error
	if o.DB, err = cfg.Int("db", o.DB); err != nil {
		return nil, err
	}
	if o.PoolSize, err = cfg.Int("pool-size", o.PoolSize); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{{"dial-timeout", &o.DialTimeout}, {"read-timeout", &o.ReadTimeout}, {"write-timeout", &o.WriteTimeout}} {
		if *d.dst, err = cfg.Duration(d.key, *d.dst); err != nil {
			return nil, err
		}
	}
	useTLS, err := cfg.Bool("tls", o.TLSConfig != nil)
	if err != nil {
		return nil, err
	}
	insecure, err := cfg.Bool("tls-insecure", false)
	if err != nil {
		return nil, err
	}
	if useTLS && o.TLSConfig == nil {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if o.TLSConfig != nil && insecure {
		o.TLSConfig.InsecureSkipVerify = true //nolint:gosec // asked for by config
	}
	if o.IsClusterMode, err = cfg.Bool("cluster", false); err != nil {
		return nil, err
	}
	retries, err := cfg.Int("max-retries", 0)
	if err != nil {
		return nil, err
	}
	if retries < 0 {
		return nil, fmt.Errorf("%w: key %q: %d is negative", plugins.ErrInvalidConfig, "max-retries", retries)
	}
	o.MaxRetries = -1 // go-redis: -1 disables retries, 0 means its default (3)
	if retries > 0 {
		o.MaxRetries = retries
	}
	if o.DB < 0 || o.PoolSize < 0 {
		return nil, fmt.Errorf("%w: db and pool-size must not be negative", plugins.ErrInvalidConfig)
	}
	return o, nil
}

// newFromConfig is the registry factory: it connects with Options(cfg) and pings.
func newFromConfig(ctx context.Context, cfg plugins.Config) (engine.State, error) {
	o, err := Options(cfg)
	if err != nil {
		return nil, err
	}
	s := New(goredis.NewUniversalClient(o))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Ping(pctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// State is the Redis engine.State (and engine.WindowAggregator, engine.BatchReader and
// engine.StorageState). It is safe for concurrent use.
type State struct {
	c goredis.UniversalClient
	// cluster is set on a Cluster client: a script then touches one slot only, so the
	// mailbox index (mailbox.go) is kept by separate commands rather than in the scripts.
	cluster bool
}

var (
	_ engine.State            = (*State)(nil)
	_ engine.WindowAggregator = (*State)(nil)
	_ engine.BatchReader      = (*State)(nil)
)

// New returns a State on c, which it closes on Close.
func New(c goredis.UniversalClient) *State {
	_, cluster := c.(*goredis.ClusterClient)
	return &State{c: c, cluster: cluster}
}

// Client returns the client the State uses.
func (s *State) Client() goredis.UniversalClient { return s.c }

// Shared reports true (engine.Sharer): other replicas read and write the same Redis, so a
// replica that learns of another's delete leaves the dropping to it.
func (s *State) Shared() bool { return true }

// Ping reports whether the server answers.
func (s *State) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: ping: %w", err)
	}
	return nil
}

// Close closes the client.
func (s *State) Close() error {
	if err := s.c.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("redis: close: %w", err)
	}
	return nil
}

// wrap adds the operation and feature to an error of the client.
func wrap(op string, f *engine.Feature, err error) error {
	return fmt.Errorf("redis: %s %s: %w", op, f.FQN, err)
}

// check fails when the call does not suit whether f is windowed.
func check(op string, f *engine.Feature, windowed bool) error {
	if f.Windowed() == windowed {
		return nil
	}
	if windowed {
		return fmt.Errorf("redis: %s %s: %w: the feature is not windowed", op, f.FQN, engine.ErrUnsupported)
	}
	return fmt.Errorf("redis: %s %s: %w: the feature is windowed (use the window calls)", op, f.FQN, engine.ErrUnsupported)
}

func typeError(op string, f *engine.Feature, v engine.Value) error {
	return fmt.Errorf("redis: %s %s: %w: got %s, want %s", op, f.FQN, engine.ErrTypeMismatch, v.Kind(), f.Primitive)
}

// retention returns how long a current value is kept: staleness, or max(staleness, Over)
// when it may still become a previous version; versions and over describe KeepPrevious.
func retention(f *engine.Feature) (keep time.Duration, versions int, over time.Duration) {
	keep = f.Staleness
	if kp := f.KeepPrevious; kp != nil {
		keep, versions, over = max(keep, kp.Over), kp.Versions, kp.Over
	}
	return keep, versions, over
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// Get returns the current value (version 0) with GET, or the Nth previous one with LINDEX.
func (s *State) Get(ctx context.Context, f *engine.Feature, keys string, version int) (engine.Value, time.Time, bool, error) {
	if err := check("get", f, false); err != nil {
		return engine.Null, time.Time{}, false, err
	}
	if version < 0 {
		return engine.Null, time.Time{}, false, fmt.Errorf("redis: get %s: %w: version %d is negative", f.FQN, engine.ErrVersionOutOfRange, version)
	}
	var limit time.Duration
	var cmd *goredis.StringCmd
	tag := entityTag(f.FQN, keys)
	switch kp := f.KeepPrevious; {
	case version == 0:
		limit = f.Staleness
		cmd = s.c.Get(ctx, tag+sufValue)
	case kp != nil && version <= kp.Versions:
		limit = kp.Over
		cmd = s.c.LIndex(ctx, tag+sufPrev, int64(version-1))
	default:
		return engine.Null, time.Time{}, false, nil
	}
	raw, err := cmd.Result()
	return decodeGet(f, raw, err, limit, time.Now())
}

// decodeGet turns the reply of a Get's GET or LINDEX into its result: a value past limit as
// of now, or of another kind, is not found.
func decodeGet(f *engine.Feature, raw string, err error, limit time.Duration, now time.Time) (engine.Value, time.Time, bool, error) {
	if errors.Is(err, goredis.Nil) {
		return engine.Null, time.Time{}, false, nil
	}
	if err != nil {
		return engine.Null, time.Time{}, false, wrap("get", f, err)
	}
	v, ns, ok, err := decodeStamped(f.Primitive, raw)
	if err != nil {
		return engine.Null, time.Time{}, false, wrap("get", f, err)
	}
	if !ok || ns <= now.UnixNano()-int64(limit) {
		return engine.Null, time.Time{}, false, nil
	}
	return v, time.Unix(0, ns).UTC(), true, nil
}

// Set makes v the current value unless the current value is later, in one script (see
// engine.State for the event-time rules it follows).
func (s *State) Set(ctx context.Context, f *engine.Feature, keys string, v engine.Value, ts time.Time) (engine.Written, error) {
	if err := check("set", f, false); err != nil {
		return engine.Written{}, err
	}
	return s.write(ctx, engine.Write{Op: engine.OpSet, Feature: f, Keys: keys, Value: v, Timestamp: ts})
}

// Append appends the list v to the current value in one script.
func (s *State) Append(ctx context.Context, f *engine.Feature, keys string, v engine.Value, ts time.Time) (engine.Value, error) {
	if err := check("append", f, false); err != nil {
		return engine.Null, err
	}
	w, err := s.write(ctx, engine.Write{Op: engine.OpAppend, Feature: f, Keys: keys, Value: v, Timestamp: ts})
	return w.Value, err
}

// Incr adds by to the current value in one script, refusing a result out of range with
// engine.ErrOverflow (and writing nothing).
func (s *State) Incr(ctx context.Context, f *engine.Feature, keys string, by engine.Value, ts time.Time) (engine.Value, error) {
	if err := check("incr", f, false); err != nil {
		return engine.Null, err
	}
	w, err := s.write(ctx, engine.Write{Op: engine.OpIncr, Feature: f, Keys: keys, Value: by, Timestamp: ts})
	return w.Value, err
}

// Update writes v the way the feature's type calls for (engine.UpdateVia: WindowAdd, Append
// or Set, each ordered as it is).
func (s *State) Update(ctx context.Context, f *engine.Feature, keys string, v engine.Value, ts time.Time) (engine.Written, error) {
	return engine.UpdateVia(ctx, s, "redis", f, keys, v, ts)
}

// firstKept returns the ID of the oldest bucket of f not yet expired at now.
func firstKept(now time.Time, f *engine.Feature) int64 {
	return engine.BucketID(now.Add(-f.Staleness-engine.DeadGracePeriod), f.Granularity)
}

// WindowAdd adds x to the bucket holding ts, in one script.
func (s *State) WindowAdd(ctx context.Context, f *engine.Feature, keys string, x float64, ts time.Time) error {
	if err := check("window add", f, true); err != nil {
		return err
	}
	_, err := s.write(ctx, engine.Write{Op: engine.OpUpdate, Feature: f, Keys: keys, Value: engine.Float(x), Timestamp: ts})
	return err
}

// write makes one write with its script (planWrite).
func (s *State) write(ctx context.Context, w engine.Write) (engine.Written, error) {
	c, err := planWrite(w, time.Now())
	if err != nil {
		return engine.Written{}, err
	}
	r, err := c.script.Run(ctx, s.c, c.keys, c.args...).StringSlice()
	return c.read(r, err)
}

// WindowBuckets returns the entity's unexpired buckets in span, sorted by ID, with one GET.
func (s *State) WindowBuckets(ctx context.Context, f *engine.Feature, keys string, span engine.WindowSpan) ([]engine.Bucket, error) {
	if err := check("window buckets", f, true); err != nil {
		return nil, err
	}
	first := max(span.First, firstKept(time.Now(), f))
	if first > span.Last {
		return nil, nil
	}
	raw, err := s.c.Get(ctx, entityTag(f.FQN, keys)+sufWindow).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap("window buckets", f, err)
	}
	var out []engine.Bucket
	if err := forBuckets(raw, first, span.Last, func(b engine.Bucket) { out = append(out, b) }); err != nil {
		return nil, wrap("window buckets", f, err)
	}
	return out, nil
}

// WindowAggregate merges the entity's unexpired buckets in span (engine.WindowAggregator):
// one GET of the bucket records, merged in ID order as they are decoded, without building
// a slice of them. (A Lua script merging inside Redis measured slower: see RATIONALE.md.)
func (s *State) WindowAggregate(ctx context.Context, f *engine.Feature, keys string, span engine.WindowSpan) (engine.Bucket, error) {
	var acc engine.Bucket
	if err := check("window aggregate", f, true); err != nil {
		return acc, err
	}
	first := max(span.First, firstKept(time.Now(), f))
	if first > span.Last {
		return acc, nil
	}
	raw, err := s.c.Get(ctx, entityTag(f.FQN, keys)+sufWindow).Result()
	return decodeAggregate(f, raw, err, first, span.Last)
}

// decodeAggregate merges the buckets in [first, last] of the reply of a GET of :w.
func decodeAggregate(f *engine.Feature, raw string, err error, first, last int64) (engine.Bucket, error) {
	var acc engine.Bucket
	if errors.Is(err, goredis.Nil) {
		return acc, nil
	}
	if err != nil {
		return acc, wrap("window aggregate", f, err)
	}
	if err := forBuckets(raw, first, last, acc.Merge); err != nil {
		return engine.Bucket{}, wrap("window aggregate", f, err)
	}
	return acc, nil
}

// windowAggregateInRedis is WindowAggregate with the merge done by a Lua script inside
// Redis, so that only the merged bucket crosses the network. It is kept for the benchmark
// that chose between the two (BenchmarkWindowGet) and for windows far larger than the
// ones measured.
func (s *State) windowAggregateInRedis(ctx context.Context, f *engine.Feature, keys string, span engine.WindowSpan) (engine.Bucket, error) {
	var acc engine.Bucket
	first := max(span.First, firstKept(time.Now(), f))
	if first > span.Last {
		return acc, nil
	}
	r, err := windowAggregateScript.Run(ctx, s.c, []string{entityTag(f.FQN, keys) + sufWindow}, idBytes(first), idBytes(span.Last)).StringSlice()
	if err != nil {
		return acc, wrap("window aggregate", f, err)
	}
	if len(r) == 0 {
		return acc, nil
	}
	if len(r) != 5 {
		return acc, wrap("window aggregate", f, fmt.Errorf("%w: script replied %d values", errCorrupt, len(r)))
	}
	if acc, err = bucketOf(0, r); err != nil {
		return engine.Bucket{}, wrap("window aggregate", f, err)
	}
	return acc, nil
}

// scanBatch is how many keys one SCAN asks for, and the most one UNLINK pipeline removes.
const scanBatch = 512

// forEachNode calls fn with every node to scan: each master of a Cluster, or the client.
func (s *State) forEachNode(ctx context.Context, fn func(ctx context.Context, c goredis.UniversalClient) error) error {
	if cc, ok := s.c.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return fn(ctx, c) })
	}
	return fn(ctx, s.c)
}

// scanKeys calls fn with each batch of keys matching pattern on node c.
func scanKeys(ctx context.Context, c goredis.UniversalClient, pattern string, fn func([]string) error) error {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, pattern, scanBatch).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := fn(keys); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// Drop SCANs every node for f's keys and UNLINKs them in batches (one key per UNLINK, so a
// batch never spans hash slots; the batch is one pipeline).
func (s *State) Drop(ctx context.Context, f *engine.Feature) error {
	err := s.forEachNode(ctx, func(ctx context.Context, c goredis.UniversalClient) error {
		return scanKeys(ctx, c, featurePattern(f.FQN), func(keys []string) error {
			_, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for _, k := range keys {
					p.Unlink(ctx, k)
				}
				return nil
			})
			return err
		})
	})
	if err != nil {
		return wrap("drop", f, err)
	}
	return nil
}

// DeadWindowBuckets SCANs every node for f's bucket records and reads them with pipelined
// GETs, returning the unexpired buckets in span.
func (s *State) DeadWindowBuckets(ctx context.Context, f *engine.Feature, span engine.WindowSpan) ([]engine.RawBucket, error) {
	if err := check("dead window buckets", f, true); err != nil {
		return nil, err
	}
	first := max(span.First, firstKept(time.Now(), f))
	if first > span.Last {
		return nil, nil
	}
	prefix := entityTag(f.FQN, "")
	var out []engine.RawBucket
	// The callback may run on several masters at once.
	var results = make(chan []engine.RawBucket, 16)
	done := make(chan struct{})
	go func() {
		for r := range results {
			out = append(out, r...)
		}
		close(done)
	}()
	err := s.forEachNode(ctx, func(ctx context.Context, c goredis.UniversalClient) error {
		return scanKeys(ctx, c, featurePattern(f.FQN)+sufWindow, func(keys []string) error {
			cmds := make([]*goredis.StringCmd, len(keys))
			if _, err := c.Pipelined(ctx, func(p goredis.Pipeliner) error {
				for i, k := range keys {
					cmds[i] = p.Get(ctx, k)
				}
				return nil
			}); err != nil && !errors.Is(err, goredis.Nil) {
				return err
			}
			var batch []engine.RawBucket
			for i, k := range keys {
				enc, ok := strings.CutPrefix(k, prefix)
				if !ok {
					continue
				}
				enc = strings.TrimSuffix(enc, sufWindow)
				raw, err := cmds[i].Result()
				if errors.Is(err, goredis.Nil) {
					continue // expired since the SCAN
				}
				if err != nil {
					return err
				}
				if err := forBuckets(raw, first, span.Last, func(b engine.Bucket) {
					batch = append(batch, engine.RawBucket{FQN: f.FQN, EncodedKeys: enc, Bucket: b})
				}); err != nil {
					return err
				}
			}
			results <- batch
			return nil
		})
	})
	close(results)
	<-done
	if err != nil {
		return nil, wrap("dead window buckets", f, err)
	}
	return out, nil
}
