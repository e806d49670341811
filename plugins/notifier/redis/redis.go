// Package redis is the Notifier on Redis Streams with consumer groups, for hosts that share
// one Redis (standalone, Sentinel or Cluster through go-redis' UniversalClient).
//
// Notifications go to a fixed number of streams (shards, one by default), the shard chosen
// by a hash of the feature's FQN so that the notifications of one feature stay in order. A
// consumer group of the Notifier is a Redis consumer group of the same name on every shard.
// Publish is XADD; Subscribe reads with XREADGROUP and acknowledges (XACK) an entry only
// after its handler returned nil; entries a dead consumer left pending are taken over by
// another subscriber of the group with XAUTOCLAIM once they have been idle for the claim
// idle time; DeleteGroup is XGROUP DESTROY. Streams are trimmed (XTRIM MINID) up to the
// oldest entry some group has not acknowledged, never further; a stream without groups
// keeps its newest MaxLen entries. Key names and the entry format are in docs/redis.md,
// "Notifier".
//
// Publish never waits for subscribers: a group that falls behind makes its backlog grow in
// Redis (Backlog reports it, and the trimmer logs it), it never makes a write fail.
//
// It registers itself with the plugins registry as "redis".
package redis

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
)

// Defaults of the options.
const (
	DefaultPrefix       = "osprey:notify"
	DefaultMaxLen       = 10000
	DefaultClaimIdle    = 30 * time.Second
	DefaultBlock        = time.Second
	DefaultRetryDelay   = 100 * time.Millisecond
	DefaultTrimInterval = 5 * time.Second
	DefaultBacklogWarn  = 100000
	DefaultBatch        = 64
	DefaultTimeout      = time.Second
)

// ErrClosed is returned by Publish, Subscribe and DeleteGroup after Close.
var ErrClosed = errors.New("notifier closed")

// deletedTTL is how long the marker of a deleted group lives: long enough for every running
// subscriber of the group to see it, short enough that markers do not accumulate.
const deletedTTL = 24 * time.Hour

func init() {
	plugins.RegisterNotifier("redis", func(ctx context.Context, cfg plugins.Config) (engine.Notifier, error) {
		return FromConfig(ctx, cfg)
	})
}

// Config keys understood by FromConfig.
var configKeys = []string{"addrs", "url", "username", "password", "db", "tls", "master-name",
	"timeout", "prefix", "shards", "max-len", "claim-idle", "block", "retry-delay",
	"trim-interval", "backlog-warn", "batch", "groups"}

// FromConfig creates a Notifier with its own client from key=value configuration (the
// keys are listed in docs/redis.md, "Notifier"). It checks that Redis answers before it
// returns. The Notifier owns the client and closes it on Close.
func FromConfig(ctx context.Context, cfg plugins.Config) (*Notifier, error) {
	if err := cfg.Check(configKeys...); err != nil {
		return nil, err
	}
	timeout, err := cfg.Duration("timeout", DefaultTimeout)
	if err != nil {
		return nil, err
	}
	opts := &redis.UniversalOptions{MasterName: cfg.String("master-name", ""),
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		// Fail fast while Redis is away: one dial per attempt, one retry (which also
		// replaces a pooled connection Redis closed by restarting).
		MaxRetries: 1, DialerRetries: 1}
	switch addrs, url := cfg.String("addrs", ""), cfg.String("url", ""); {
	case addrs != "" && url != "":
		return nil, fmt.Errorf("%w: keys \"addrs\" and \"url\" exclude each other", plugins.ErrInvalidConfig)
	case url != "":
		o, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("%w: key \"url\": %v", plugins.ErrInvalidConfig, err)
		}
		opts.Addrs, opts.Username, opts.Password, opts.DB, opts.TLSConfig = []string{o.Addr}, o.Username, o.Password, o.DB, o.TLSConfig
	default:
		if addrs == "" {
			addrs = "127.0.0.1:6379"
		}
		opts.Addrs = splitList(addrs)
	}
	if cfg.Has("username") {
		opts.Username = cfg.String("username", "")
	}
	if cfg.Has("password") {
		opts.Password = cfg.String("password", "")
	}
	if opts.DB, err = cfg.Int("db", opts.DB); err != nil {
		return nil, err
	}
	useTLS, err := cfg.Bool("tls", opts.TLSConfig != nil)
	if err != nil {
		return nil, err
	}
	if useTLS && opts.TLSConfig == nil {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else if !useTLS {
		opts.TLSConfig = nil
	}

	var o []Option
	o = append(o, WithPrefix(cfg.String("prefix", DefaultPrefix)))
	for _, kv := range []struct {
		key string
		def int
		opt func(int) Option
	}{
		{"shards", 1, WithShards},
		{"max-len", DefaultMaxLen, WithMaxLen},
		{"backlog-warn", DefaultBacklogWarn, WithBacklogWarn},
		{"batch", DefaultBatch, WithBatch},
	} {
		v, err := cfg.Int(kv.key, kv.def)
		if err != nil {
			return nil, err
		}
		o = append(o, kv.opt(v))
	}
	for _, kv := range []struct {
		key string
		def time.Duration
		opt func(time.Duration) Option
	}{
		{"claim-idle", DefaultClaimIdle, WithClaimIdle},
		{"block", DefaultBlock, WithBlock},
		{"retry-delay", DefaultRetryDelay, WithRetryDelay},
		{"trim-interval", DefaultTrimInterval, WithTrimInterval},
	} {
		v, err := cfg.Duration(kv.key, kv.def)
		if err != nil {
			return nil, err
		}
		o = append(o, kv.opt(v))
	}
	if g := cfg.String("groups", ""); g != "" {
		o = append(o, WithGroups(splitList(g)...))
	}
	o = append(o, WithTimeout(timeout), withOwnedClient())
	// Validate the options before dialling.
	if _, err := newNotifier(nil, o...); err != nil {
		return nil, err
	}
	client := redis.NewUniversalClient(opts)
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("redis notifier: ping %s: %w", strings.Join(opts.Addrs, ","), err)
	}
	n, err := New(ctx, client, o...)
	if err != nil {
		client.Close()
		return nil, err
	}
	return n, nil
}

// splitList splits a list separated by ',', ';' or spaces (osprey serve's --notifier-config
// already splits on ',', so there a list is written a;b).
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' })
}

// Notifier is the engine.Notifier on Redis Streams (see the package documentation). It is
// safe for concurrent use.
type Notifier struct {
	client       redis.UniversalClient
	ownClient    bool
	prefix       string
	shards       int
	maxLen       int64
	claimIdle    time.Duration
	block        time.Duration
	retryDelay   time.Duration
	trimInterval time.Duration
	backlogWarn  int64
	batch        int64
	timeout      time.Duration
	groups       []string
	log          *slog.Logger

	consumerBase string
	consumers    atomic.Uint64

	closeOnce sync.Once
	closing   chan struct{}
	closed    atomic.Bool
	bg        sync.WaitGroup
}

// Option configures a Notifier.
type Option func(*Notifier) error

// WithPrefix sets the prefix of the stream keys (DefaultPrefix when unset).
func WithPrefix(p string) Option {
	return func(n *Notifier) error {
		if p == "" || strings.ContainsAny(p, "{} \t\n") {
			return fmt.Errorf("%w: prefix %q: must be non-empty, without braces or white space", plugins.ErrInvalidConfig, p)
		}
		n.prefix = p
		return nil
	}
}

// WithShards sets how many streams notifications are spread over (1 when unset). Every
// Notifier on one Redis must use the same count. In a Cluster, a count of at least the
// number of masters spreads the streams over them.
func WithShards(k int) Option {
	return func(n *Notifier) error {
		if k < 1 || k > 1024 {
			return fmt.Errorf("%w: shards %d: must be 1 to 1024", plugins.ErrInvalidConfig, k)
		}
		n.shards = k
		return nil
	}
}

// WithMaxLen sets how many entries a stream without any consumer group keeps (DefaultMaxLen
// when unset). It never trims an entry a group has not acknowledged.
func WithMaxLen(l int) Option {
	return func(n *Notifier) error {
		if l < 0 {
			return fmt.Errorf("%w: max-len %d: must not be negative", plugins.ErrInvalidConfig, l)
		}
		n.maxLen = int64(l)
		return nil
	}
}

// WithClaimIdle sets how long an entry stays pending with a consumer before another
// subscriber of the group takes it over (DefaultClaimIdle when unset). It must exceed the
// longest a handler runs, or a slow handler's entry is delivered twice.
func WithClaimIdle(d time.Duration) Option {
	return positive("claim-idle", d, func(n *Notifier) { n.claimIdle = d })
}

// WithBlock sets how long one XREADGROUP waits for new entries (DefaultBlock when unset). It
// bounds how late a subscriber notices the end of its context, a due retry or a claim.
func WithBlock(d time.Duration) Option {
	return positive("block", d, func(n *Notifier) { n.block = d })
}

// WithRetryDelay sets how long an entry whose handler failed waits before it is delivered
// again (DefaultRetryDelay when unset).
func WithRetryDelay(d time.Duration) Option {
	return func(n *Notifier) error {
		if d < 0 {
			return fmt.Errorf("%w: retry-delay %v: must not be negative", plugins.ErrInvalidConfig, d)
		}
		n.retryDelay = d
		return nil
	}
}

// WithTrimInterval sets how often the Notifier trims its streams and checks the groups'
// backlog (DefaultTrimInterval when unset).
func WithTrimInterval(d time.Duration) Option {
	return positive("trim-interval", d, func(n *Notifier) { n.trimInterval = d })
}

// WithBacklogWarn sets the backlog (entries not yet delivered plus entries pending) of a
// group above which the trimmer logs a warning (DefaultBacklogWarn when unset).
func WithBacklogWarn(k int) Option {
	return func(n *Notifier) error {
		if k < 1 {
			return fmt.Errorf("%w: backlog-warn %d: must be at least 1", plugins.ErrInvalidConfig, k)
		}
		n.backlogWarn = int64(k)
		return nil
	}
}

// WithBatch sets how many entries one read fetches (DefaultBatch when unset).
func WithBatch(k int) Option {
	return func(n *Notifier) error {
		if k < 1 {
			return fmt.Errorf("%w: batch %d: must be at least 1", plugins.ErrInvalidConfig, k)
		}
		n.batch = int64(k)
		return nil
	}
}

// WithGroups declares consumer groups that exist from the start (and are recreated by the
// trimmer if Redis lost them), so that nothing published before their first subscriber
// arrives is lost.
func WithGroups(names ...string) Option {
	return func(n *Notifier) error {
		for _, g := range names {
			if g = strings.TrimSpace(g); g == "" {
				return fmt.Errorf("%w: groups: empty group name", plugins.ErrInvalidConfig)
			}
			n.groups = append(n.groups, g)
		}
		return nil
	}
}

// WithLogger sets the logger of backlog warnings and connection trouble (slog.Default()
// when unset).
func WithLogger(l *slog.Logger) Option {
	return func(n *Notifier) error { n.log = l; return nil }
}

// WithTimeout bounds the commands the Notifier issues on its own (acknowledgements after a
// subscriber's context ended, cleanup) (DefaultTimeout when unset).
func WithTimeout(d time.Duration) Option {
	return positive("timeout", d, func(n *Notifier) { n.timeout = d })
}

func withOwnedClient() Option { return func(n *Notifier) error { n.ownClient = true; return nil } }

func positive(key string, d time.Duration, set func(*Notifier)) Option {
	return func(n *Notifier) error {
		if d <= 0 {
			return fmt.Errorf("%w: %s %v: must be positive", plugins.ErrInvalidConfig, key, d)
		}
		set(n)
		return nil
	}
}

func newNotifier(client redis.UniversalClient, opts ...Option) (*Notifier, error) {
	host, _ := os.Hostname()
	n := &Notifier{client: client, prefix: DefaultPrefix, shards: 1, maxLen: DefaultMaxLen,
		claimIdle: DefaultClaimIdle, block: DefaultBlock, retryDelay: DefaultRetryDelay,
		trimInterval: DefaultTrimInterval, backlogWarn: DefaultBacklogWarn, batch: DefaultBatch,
		timeout: DefaultTimeout, log: slog.Default(), closing: make(chan struct{}),
		consumerBase: fmt.Sprintf("%s-%d-%s", host, os.Getpid(), strings.ToLower(rand.Text()[:8]))}
	for _, o := range opts {
		if err := o(n); err != nil {
			return nil, fmt.Errorf("redis notifier: %w", err)
		}
	}
	return n, nil
}

// New returns a Notifier on client. It creates the declared groups (WithGroups) and starts
// the background trimmer. The caller keeps ownership of client: Close does not close it.
func New(ctx context.Context, client redis.UniversalClient, opts ...Option) (*Notifier, error) {
	if client == nil {
		return nil, errors.New("redis notifier: nil client")
	}
	n, err := newNotifier(client, opts...)
	if err != nil {
		return nil, err
	}
	if err := n.ensureDeclared(ctx); err != nil {
		return nil, err
	}
	n.bg.Add(1)
	go n.trimLoop()
	return n, nil
}

// Client returns the client the Notifier uses (the historian's leader lock shares it).
func (n *Notifier) Client() redis.UniversalClient { return n.client }

// Stream returns the key of shard i's stream: prefix + ":{" + i + "}". The braces make i
// the key's Cluster hash tag, so that the shards land in different slots.
func (n *Notifier) Stream(i int) string { return n.prefix + ":{" + strconv.Itoa(i) + "}" }

// deletedKey is the marker DeleteGroup leaves for the running subscribers of group on shard
// i; it shares the stream's hash tag.
func (n *Notifier) deletedKey(i int, group string) string {
	return n.Stream(i) + ":deleted:" + group
}

func (n *Notifier) shardOf(fqn string) int {
	if n.shards == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(fqn))
	return int(h.Sum32() % uint32(n.shards))
}

// Publish appends n to its shard's stream (XADD). It returns once Redis accepted the entry;
// it never waits for subscribers. While Redis is out of reach it fails within the client's
// timeouts with the client's network error, wrapped.
func (n *Notifier) Publish(ctx context.Context, note engine.Notification) error {
	if n.closed.Load() {
		return ErrClosed
	}
	payload, err := encode(note)
	if err != nil {
		return fmt.Errorf("redis notifier: publish: %w", err)
	}
	key := n.Stream(n.shardOf(note.FQN))
	if err := n.client.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{entryField, payload}}).Err(); err != nil {
		return fmt.Errorf("redis notifier: publish to %s: %w", key, err)
	}
	return nil
}

// PublishBatch enqueues ns in order with one pipeline of XADDs (engine.BatchPublisher): one
// round trip (per node, on a Cluster) instead of one per notification. Each stream gets its
// entries in the order of ns. On an error, the entries before the failed one on its stream
// may be in the streams (and are delivered); the error names how many of ns failed.
func (n *Notifier) PublishBatch(ctx context.Context, ns []engine.Notification) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if len(ns) == 0 {
		return nil
	}
	if len(ns) == 1 {
		return n.Publish(ctx, ns[0])
	}
	pipe := n.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(ns))
	for i, note := range ns {
		payload, err := encode(note)
		if err != nil {
			return fmt.Errorf("redis notifier: publish %d notifications: notification %d: %w (none sent)", len(ns), i, err)
		}
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: n.Stream(n.shardOf(note.FQN)), Values: []any{entryField, payload}})
	}
	_, _ = pipe.Exec(ctx)
	failed, first := 0, error(nil)
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if first != nil {
		return fmt.Errorf("redis notifier: publish: %d of %d notifications failed: %w", failed, len(ns), first)
	}
	return nil
}

// createGroup creates group on shard i's stream at its oldest entry, creating the stream
// when missing; an existing group is left alone.
func (n *Notifier) createGroup(ctx context.Context, i int, group string) error {
	err := n.client.XGroupCreateMkStream(ctx, n.Stream(i), group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("redis notifier: create group %s on %s: %w", group, n.Stream(i), err)
	}
	return nil
}

func (n *Notifier) ensureDeclared(ctx context.Context) error {
	for _, g := range n.groups {
		for i := range n.shards {
			if err := n.createGroup(ctx, i, g); err != nil {
				return err
			}
		}
	}
	return nil
}

// Subscribe delivers notifications to handle until ctx ends (see engine.Notifier). handle
// is called from one goroutine at a time. A group first named by Subscribe starts at the
// oldest entry still in the streams. An entry is acknowledged after handle returned nil —
// the entries of one read together, with one XACK after the last of them — and one whose
// handle failed is delivered again after the retry delay; entries another consumer
// left pending for the claim idle time are taken over. While Redis is out of reach,
// Subscribe logs and retries; it returns ctx's error when ctx ends, engine.ErrGroupDeleted
// when DeleteGroup removed the group, ErrClosed when the Notifier is closed.
func (n *Notifier) Subscribe(ctx context.Context, group string, handle func(context.Context, engine.Notification) error) error {
	if group == "" {
		return errors.New("redis notifier: subscribe: empty group name")
	}
	if n.closed.Load() {
		return ErrClosed
	}
	consumer := n.consumerBase + "-" + strconv.FormatUint(n.consumers.Add(1), 10)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.closing:
			cancel()
		case <-sctx.Done():
		}
	}()
	var hmu sync.Mutex
	serial := func(c context.Context, x engine.Notification) error {
		hmu.Lock()
		defer hmu.Unlock()
		return handle(c, x)
	}
	return n.subscribe(ctx, sctx, cancel, group, consumer, func(int) sink { return &oneByOne{n: n, group: group, handle: serial} })
}

// subscribe runs one consumer of group per shard, each delivering to the sink newSink makes
// for it, until sctx ends; it returns the first error that is not a cancellation, or ctx's.
func (n *Notifier) subscribe(ctx, sctx context.Context, cancel context.CancelFunc, group, consumer string, newSink func(shard int) sink) error {
	errs := make(chan error, n.shards)
	for i := range n.shards {
		go func() { errs <- n.consume(sctx, i, group, consumer, newSink(i)) }()
	}
	var first error
	for range n.shards {
		err := <-errs
		if first == nil || errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled) {
			first = err
		}
		cancel()
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case n.closed.Load():
		return ErrClosed
	}
	return first
}

// consume runs one consumer of group on shard i until ctx ends or the group is deleted.
func (n *Notifier) consume(ctx context.Context, i int, group, consumer string, out sink) error {
	key := n.Stream(i)
	log := n.log.With(slog.String("stream", key), slog.String("group", group), slog.String("consumer", consumer))
	defer n.dropConsumer(i, group, consumer)

	var marker string       // the deletion marker seen when the group was joined
	var joined bool         // the group exists (as far as we know)
	var retryAt time.Time   // when entries whose handler failed are due again; zero: none
	nextClaim := time.Now() // when to look for entries of dead consumers
	claimFrom := "0-0"      // XAUTOCLAIM cursor
	backoff := time.Duration(0)
	failing := false
	idle := false // the last read found nothing

	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := out.redeliver(ctx, key); err != nil {
			return err
		}
		room := out.room(idle) // reserved: what the read does not hand out is given back
		if room <= 0 {         // as many handed out as the subscriber allows
			select {
			case <-out.ready():
			case <-time.After(n.block):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		var msgs []redis.XMessage
		var err error
		now := time.Now() // also when the read is sent (sink.settle)
		switch {
		case !joined:
			marker, err = n.client.Get(ctx, n.deletedKey(i, group)).Result()
			if errors.Is(err, redis.Nil) {
				err = nil
			}
			if err == nil {
				err = n.createGroup(ctx, i, group)
			}
			joined = err == nil
			if joined {
				n.sweepConsumers(ctx, i, group, consumer)
			}
		case !retryAt.IsZero() && !now.Before(retryAt):
			// Our own pending entries: those whose handler failed.
			var res []redis.XStream
			res, err = n.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer,
				Streams: []string{key, "0"}, Count: room, Block: -1}).Result()
			msgs = flatten(res)
			retryAt = time.Time{}
		case !now.Before(nextClaim):
			var next string
			msgs, next, err = n.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: key, Group: group,
				Consumer: consumer, MinIdle: n.claimIdle, Start: claimFrom, Count: room}).Result()
			if err == nil {
				// Entries this subscriber still handles (a batch the historian holds
				// until its object is written) come back too: not taken over from anyone.
				taken := 0
				for _, m := range msgs {
					if !out.handling(m.ID) {
						taken++
					}
				}
				if taken > 0 {
					log.LogAttrs(ctx, slog.LevelInfo, "redis notifier: took over entries idle too long",
						slog.Int("entries", taken), slog.Duration("idle", n.claimIdle))
				}
				claimFrom = next
				if next == "0-0" {
					nextClaim = now.Add(max(n.claimIdle/2, time.Millisecond))
				}
			}
		default:
			block := n.block
			if !retryAt.IsZero() {
				block = min(block, retryAt.Sub(now))
			}
			if at := out.retryAt(); !at.IsZero() {
				block = min(block, at.Sub(now))
			}
			block = max(min(block, nextClaim.Sub(now)), time.Millisecond)
			var res []redis.XStream
			res, err = n.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer,
				Streams: []string{key, ">"}, Count: room, Block: block}).Result()
			msgs = flatten(res)
		}
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		if err != nil {
			out.unused(room) // nothing was read
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if isNoGroup(err) {
				deleted, derr := n.wasDeleted(ctx, i, group, marker)
				if derr == nil && deleted {
					return engine.ErrGroupDeleted
				}
				if derr == nil {
					log.LogAttrs(ctx, slog.LevelWarn, "redis notifier: group vanished without DeleteGroup (Redis lost its data?); recreating it")
					joined = false
					continue
				}
				err = derr
			}
			if !failing {
				log.LogAttrs(ctx, slog.LevelWarn, "redis notifier: read failed; retrying", slog.Any("error", err))
				failing = true
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if failing {
			log.LogAttrs(ctx, slog.LevelInfo, "redis notifier: reading again")
			failing, backoff = false, 0
		}
		ids := make([]string, 0, len(msgs))
		notes := make([]engine.Notification, 0, len(msgs))
		for _, m := range msgs {
			if out.handling(m.ID) { // ours, still being handled: claimed or read again
				continue
			}
			if m.Values == nil { // deleted from the stream while pending
				n.ack(ctx, key, group, m.ID)
				continue
			}
			raw, _ := m.Values[entryField].(string)
			note, derr := decode(raw)
			if derr != nil { // can never succeed: acknowledge and say so
				log.LogAttrs(ctx, slog.LevelError, "redis notifier: dropping an undecodable entry",
					slog.String("id", m.ID), slog.Any("error", derr))
				n.ack(ctx, key, group, m.ID)
				continue
			}
			ids, notes = append(ids, m.ID), append(notes, note)
		}
		out.settle(now)
		out.unused(room - int64(len(notes)))
		idle = len(msgs) == 0
		if len(notes) == 0 {
			continue
		}
		if failed := out.deliver(ctx, key, ids, notes); failed {
			if retryAt.IsZero() {
				retryAt = time.Now().Add(n.retryDelay)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}

// sink is where a consumer delivers what it reads from one shard.
type sink interface {
	// room is how many entries the consumer may read now; idle is set when the shard's last
	// read found nothing (a sink sharing a budget between shards then reserves little, so
	// that a shard blocked on an empty stream does not hold back the others).
	room(idle bool) int64
	// ready is signalled when room may have grown.
	ready() <-chan struct{}
	// handling reports whether the entry is ours and still being handled (so that reading
	// it again, by a claim, does not deliver it twice).
	handling(id string) bool
	// deliver hands the entries read over; failed reports entries whose handling failed
	// and that the consumer must read again from its pending entries after the retry delay.
	deliver(ctx context.Context, key string, ids []string, notes []engine.Notification) (failed bool)
	// settle tells the sink that a read sent at sent has been handled.
	settle(sent time.Time)
	// unused gives back what room reserved and the read did not hand out.
	unused(k int64)
	// redeliver hands over again what the sink itself keeps for a retry, once due.
	redeliver(ctx context.Context, key string) error
	// retryAt is when redeliver next has something due (zero: nothing).
	retryAt() time.Time
}

// oneByOne is the sink of Subscribe: each entry handled in turn, acknowledged when its
// handler returns nil, read again from the pending entries when it fails.
type oneByOne struct {
	n      *Notifier
	group  string
	handle func(context.Context, engine.Notification) error
}

func (s *oneByOne) room(bool) int64                         { return s.n.batch }
func (s *oneByOne) ready() <-chan struct{}                  { return nil }
func (s *oneByOne) handling(string) bool                    { return false }
func (s *oneByOne) redeliver(context.Context, string) error { return nil }
func (s *oneByOne) settle(time.Time)                        {}
func (s *oneByOne) unused(int64)                            {}
func (s *oneByOne) retryAt() time.Time                      { return time.Time{} }

// deliver hands each entry of a read to the handler in turn and acknowledges those it
// handled with one XACK, after the last (a watch hub reading every write of every replica
// sent one XACK per entry, a Redis command per write per replica).
func (s *oneByOne) deliver(ctx context.Context, key string, ids []string, notes []engine.Notification) (failed bool) {
	handled := make([]string, 0, len(ids))
	for i, note := range notes {
		if herr := s.handle(ctx, note); herr != nil {
			failed = true
			if ctx.Err() != nil {
				break
			}
			continue
		}
		handled = append(handled, ids[i])
	}
	if len(handled) > 0 {
		s.n.ack(ctx, key, s.group, handled...)
	}
	return failed
}

func flatten(res []redis.XStream) []redis.XMessage {
	if len(res) == 1 {
		return res[0].Messages
	}
	var out []redis.XMessage
	for _, s := range res {
		out = append(out, s.Messages...)
	}
	return out
}

// ack acknowledges id. It runs even when ctx has just ended, so that a handled entry is not
// delivered again on a clean stop. A failed acknowledgement leaves the entry pending, to be
// delivered again (at least once).
func (n *Notifier) ack(ctx context.Context, key, group string, ids ...string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.timeout)
	defer cancel()
	if err := n.client.XAck(actx, key, group, ids...).Err(); err != nil && !isNoGroup(err) {
		n.log.LogAttrs(actx, slog.LevelWarn, "redis notifier: acknowledgement failed; the entries will be delivered again",
			slog.String("stream", key), slog.String("group", group), slog.String("first", ids[0]),
			slog.Int("entries", len(ids)), slog.Any("error", err))
	}
}

// dropConsumer removes consumer from the group when it holds no pending entry (those it
// holds wait for XAUTOCLAIM by another subscriber).
func (n *Notifier) dropConsumer(i int, group, consumer string) {
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
	defer cancel()
	key := n.Stream(i)
	p, err := n.client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: group,
		Consumer: consumer, Start: "-", End: "+", Count: 1}).Result()
	if err != nil || len(p) > 0 {
		return
	}
	_ = n.client.XGroupDelConsumer(ctx, key, group, consumer).Err()
}

// sweepConsumers removes from the group the consumers other subscribers left behind: no
// entry pending, and idle for longer than any live subscriber is (a live one reads at least
// every block time). A subscription that ended holding entries keeps its consumer until
// those are acknowledged or claimed; this removes it afterwards, so consumers do not pile up
// over restarts.
func (n *Notifier) sweepConsumers(ctx context.Context, i int, group, self string) {
	key := n.Stream(i)
	cs, err := n.client.XInfoConsumers(ctx, key, group).Result()
	if err != nil {
		return
	}
	idle := max(10*n.block, n.claimIdle)
	for _, c := range cs {
		if c.Name != self && c.Pending == 0 && c.Idle > idle {
			_ = n.client.XGroupDelConsumer(ctx, key, group, c.Name).Err()
		}
	}
}

// wasDeleted reports whether DeleteGroup ran on group since a subscriber that saw marker
// joined it (as opposed to Redis losing the group, in a restart without persistence).
func (n *Notifier) wasDeleted(ctx context.Context, i int, group, marker string) (bool, error) {
	m, err := n.client.Get(ctx, n.deletedKey(i, group)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("redis notifier: read the deletion marker: %w", err)
	}
	return m != marker, nil
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// deleteScript destroys a group on one stream and leaves a marker for its running
// subscribers. KEYS[1] is the stream, KEYS[2] the marker; ARGV[1] the group, ARGV[2] a fresh
// token, ARGV[3] the marker's lifetime in seconds.
var deleteScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
if n == 1 then redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3])) end
return n
`)

// DeleteGroup destroys group on every shard (XGROUP DESTROY): its position and pending
// entries are forgotten and the trimmer no longer keeps entries for it. Its running
// subscribers return engine.ErrGroupDeleted. Deleting a group that does not exist succeeds.
func (n *Notifier) DeleteGroup(ctx context.Context, group string) error {
	if n.closed.Load() {
		return ErrClosed
	}
	token := strings.ToLower(rand.Text())
	for i := range n.shards {
		err := deleteScript.Run(ctx, n.client, []string{n.Stream(i), n.deletedKey(i, group)},
			group, token, int(deletedTTL/time.Second)).Err()
		if err != nil {
			return fmt.Errorf("redis notifier: delete group %s on %s: %w", group, n.Stream(i), err)
		}
	}
	return nil
}

// GroupBacklog is one consumer group's backlog, summed over the shards.
type GroupBacklog struct {
	Group string
	// Lag counts entries not yet delivered to the group; -1 when Redis cannot tell (after
	// entries were deleted from the middle of a stream).
	Lag int64
	// Pending counts entries delivered and not yet acknowledged.
	Pending int64
	// Consumers counts the group's consumers.
	Consumers int64
}

// Backlog reports every group's backlog, sorted by group name. It is safe to call at any
// time.
func (n *Notifier) Backlog(ctx context.Context) ([]GroupBacklog, error) {
	by := map[string]*GroupBacklog{}
	var names []string
	for i := range n.shards {
		gs, err := n.groupsOf(ctx, i)
		if err != nil {
			return nil, err
		}
		for _, g := range gs {
			b := by[g.Name]
			if b == nil {
				b = &GroupBacklog{Group: g.Name}
				by[g.Name] = b
				names = append(names, g.Name)
			}
			if g.Lag < 0 || b.Lag < 0 {
				b.Lag = -1
			} else {
				b.Lag += g.Lag
			}
			b.Pending += g.Pending
			b.Consumers += g.Consumers
		}
	}
	out := make([]GroupBacklog, 0, len(names))
	slices.Sort(names)
	for _, name := range names {
		out = append(out, *by[name])
	}
	return out, nil
}

// Len returns how many entries the streams hold.
func (n *Notifier) Len(ctx context.Context) (int64, error) {
	var total int64
	for i := range n.shards {
		l, err := n.client.XLen(ctx, n.Stream(i)).Result()
		if err != nil {
			return 0, fmt.Errorf("redis notifier: length of %s: %w", n.Stream(i), err)
		}
		total += l
	}
	return total, nil
}

func (n *Notifier) groupsOf(ctx context.Context, i int) ([]redis.XInfoGroup, error) {
	gs, err := n.client.XInfoGroups(ctx, n.Stream(i)).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return nil, nil
		}
		return nil, fmt.Errorf("redis notifier: groups of %s: %w", n.Stream(i), err)
	}
	return gs, nil
}

// Trim removes from every stream the entries every group has acknowledged (XTRIM MINID at
// the oldest entry a group still needs: its oldest pending entry, or the one after its last
// delivered); a stream without groups keeps its newest MaxLen. It logs a warning for each
// group whose backlog exceeds the warning level, and returns how many entries it removed.
// The trimmer calls it every trim interval; it is safe to call concurrently, from any
// number of hosts.
func (n *Notifier) Trim(ctx context.Context) (int64, error) {
	var removed int64
	for i := range n.shards {
		key := n.Stream(i)
		gs, err := n.groupsOf(ctx, i)
		if err != nil {
			return removed, err
		}
		if created, err := n.restoreDeclared(ctx, i, gs); err != nil {
			return removed, err
		} else if created {
			if gs, err = n.groupsOf(ctx, i); err != nil {
				return removed, err
			}
		}
		var r int64
		if len(gs) == 0 {
			r, err = n.client.XTrimMaxLen(ctx, key, n.maxLen).Result()
		} else {
			var floor streamID
			floor, err = n.floor(ctx, key, gs)
			if err == nil {
				r, err = n.client.XTrimMinID(ctx, key, floor.String()).Result()
			}
		}
		if err != nil {
			return removed, fmt.Errorf("redis notifier: trim %s: %w", key, err)
		}
		removed += r
		for _, g := range gs {
			if backlog := max(g.Lag, 0) + g.Pending; backlog > n.backlogWarn {
				n.log.LogAttrs(ctx, slog.LevelWarn, "redis notifier: group falls behind",
					slog.String("stream", key), slog.String("group", g.Name), slog.Int64("lag", g.Lag),
					slog.Int64("pending", g.Pending), slog.Int64("consumers", g.Consumers))
			}
		}
	}
	return removed, nil
}

// restoreDeclared creates the declared groups missing from shard i (gs lists its groups)
// unless DeleteGroup removed them (its marker is there): Redis lost them, in a restart
// without persistence, and they must not miss what is published from now on.
func (n *Notifier) restoreDeclared(ctx context.Context, i int, gs []redis.XInfoGroup) (bool, error) {
	created := false
	for _, g := range n.groups {
		if slices.ContainsFunc(gs, func(x redis.XInfoGroup) bool { return x.Name == g }) {
			continue
		}
		deleted, err := n.client.Exists(ctx, n.deletedKey(i, g)).Result()
		if err != nil {
			return created, fmt.Errorf("redis notifier: read the deletion marker of %s: %w", g, err)
		}
		if deleted == 0 {
			n.log.LogAttrs(ctx, slog.LevelWarn, "redis notifier: declared group missing (Redis lost its data?); recreating it",
				slog.String("stream", n.Stream(i)), slog.String("group", g))
			if err := n.createGroup(ctx, i, g); err != nil {
				return created, err
			}
			created = true
		}
	}
	return created, nil
}

// floor returns the oldest entry ID some group of key still needs. Groups only move forward
// between XINFO GROUPS and the XTRIM that follows, so the floor computed is never too high;
// a group created in between starts at the oldest entry left.
func (n *Notifier) floor(ctx context.Context, key string, gs []redis.XInfoGroup) (streamID, error) {
	floor := streamID{ms: ^uint64(0), seq: ^uint64(0)}
	for _, g := range gs {
		last, err := parseID(g.LastDeliveredID)
		if err != nil {
			return streamID{}, err
		}
		need := last.next()
		if g.Pending > 0 {
			p, err := n.client.XPending(ctx, key, g.Name).Result()
			if err != nil && !isNoGroup(err) {
				return streamID{}, err
			}
			if err == nil && p.Count > 0 {
				lo, err := parseID(p.Lower)
				if err != nil {
					return streamID{}, err
				}
				need = minID(need, lo)
			}
		}
		floor = minID(floor, need)
	}
	return floor, nil
}

func (n *Notifier) trimLoop() {
	defer n.bg.Done()
	t := time.NewTicker(n.trimInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-n.closing:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(n.trimInterval, n.timeout))
		_, err := n.Trim(ctx)
		cancel()
		if err != nil && !failing {
			n.log.Warn("redis notifier: trim failed", "error", err)
		}
		failing = err != nil
	}
}

// Close stops the trimmer and the running subscribers (they return ErrClosed) and closes
// the client if FromConfig created it. It is safe to call more than once.
func (n *Notifier) Close() error {
	var err error
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		close(n.closing)
		n.bg.Wait()
		if n.ownClient {
			err = n.client.Close()
		}
	})
	return err
}
