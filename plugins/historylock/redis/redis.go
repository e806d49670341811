// Package redis is the historian's leader lock on Redis (historian.Leader): a lease key set
// with SET NX PX, renewed by its holder, and a fencing token from a counter that only grows.
//
// Keys (docs/history.md): <prefix>:lease holds "<fence>:<holder>" and expires after the TTL
// unless renewed; <prefix>:fence is the counter (INCR) the tokens come from. Both carry the
// same hash tag, so they live in one Cluster slot.
//
// A holder renews every TTL/3 and ends its lease's context — with historian.ErrLostLead —
// once TTL − Margin has passed since its last successful renewal: by then it has stopped
// writing, before the key can expire and another replica take the lease. A replica waiting
// to lead tries every Poll, so a leader that dies is replaced within TTL + Poll.
package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/historian"
)

// Defaults.
const (
	DefaultPrefix = "osprey:{historian}"
	DefaultTTL    = 6 * time.Second
	DefaultPoll   = time.Second
)

// Config configures a Lock. Client is required.
type Config struct {
	Client goredis.UniversalClient
	// Prefix of the keys (DefaultPrefix); keep a hash tag in it for Cluster.
	Prefix string
	// TTL is the lease's lifetime without renewal (DefaultTTL); Margin how long before its
	// end the holder stops (TTL/3 when 0); Poll how often a waiting replica tries
	// (DefaultPoll).
	TTL, Margin, Poll time.Duration
	// Logger logs leadership changes (slog.Default() when nil).
	Logger *slog.Logger
}

// Lock is a historian.Leader on Redis. It is safe for concurrent use.
type Lock struct {
	cfg    Config
	holder string
}

// New returns a Lock.
func New(cfg Config) (*Lock, error) {
	if cfg.Client == nil {
		return nil, errors.New("historian lock: Config.Client is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Margin == 0 {
		cfg.Margin = cfg.TTL / 3
	}
	if cfg.Poll == 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.TTL < 10*time.Millisecond || cfg.Margin <= 0 || cfg.Margin >= cfg.TTL || cfg.Poll <= 0 {
		return nil, fmt.Errorf("historian lock: TTL %v, Margin %v, Poll %v: want TTL ≥ 10ms, 0 < Margin < TTL, Poll > 0", cfg.TTL, cfg.Margin, cfg.Poll)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Lock{cfg: cfg, holder: strings.ToLower(rand.Text())}, nil
}

func (l *Lock) leaseKey() string { return l.cfg.Prefix + ":lease" }
func (l *Lock) fenceKey() string { return l.cfg.Prefix + ":fence" }

// acquire takes the lease if it is free: KEYS[1] lease, KEYS[2] fence; ARGV[1] holder,
// ARGV[2] TTL in ms. Returns the new fence, or 0 when the lease is held.
var acquire = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], fence .. ':' .. ARGV[1], 'PX', tonumber(ARGV[2]))
return fence
`)

// renew extends the lease if it is still ours: ARGV[1] "<fence>:<holder>", ARGV[2] TTL ms.
var renew = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
`)

// release deletes the lease if it is still ours.
var release = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`)

// Lead waits until this process holds the lease (historian.Leader).
func (l *Lock) Lead(ctx context.Context) (historian.Lease, error) {
	for {
		sent := time.Now() // the lease's TTL runs from no earlier than this
		fence, err := acquire.Run(ctx, l.cfg.Client, []string{l.leaseKey(), l.fenceKey()}, l.holder, l.cfg.TTL.Milliseconds()).Int64()
		if err == nil && fence > 0 {
			return l.hold(ctx, fence, sent), nil
		}
		if err != nil && ctx.Err() == nil {
			l.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "historian lock: could not try the lease", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return historian.Lease{}, ctx.Err()
		case <-time.After(l.cfg.Poll):
		}
	}
}

// hold renews the lease in the background until it is lost or released.
func (l *Lock) hold(parent context.Context, fence int64, since time.Time) historian.Lease {
	// The lease outlives Lead's context: it ends when lost or released, so that a holder
	// stopping cleanly can still finish its writes under it.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	value := strconv.FormatInt(fence, 10) + ":" + l.holder
	keys := []string{l.leaseKey()}
	stopped := make(chan struct{})
	var mu sync.Mutex
	last := since // the last renewal known to have succeeded (or the acquisition)
	until := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return last.Add(l.cfg.TTL - l.cfg.Margin)
	}
	go func() {
		defer close(stopped)
		tick := time.NewTicker(min(l.cfg.TTL/3, (l.cfg.TTL-l.cfg.Margin)/2))
		defer tick.Stop()
		for {
			deadline := until()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(deadline)):
				cancel(fmt.Errorf("%w: not renewed for %v (fence %d)", historian.ErrLostLead, l.cfg.TTL-l.cfg.Margin, fence))
				return
			case <-tick.C:
			}
			sent := time.Now()
			rctx, rcancel := context.WithDeadline(ctx, deadline)
			ok, err := renew.Run(rctx, l.cfg.Client, keys, value, l.cfg.TTL.Milliseconds()).Int64()
			rcancel()
			switch {
			case err == nil && ok == 1:
				mu.Lock()
				last = sent
				mu.Unlock()
			case err == nil:
				cancel(fmt.Errorf("%w: the lease is no longer ours (fence %d)", historian.ErrLostLead, fence))
				return
			}
		}
	}()
	return historian.Lease{Fence: fence, Context: ctx, Until: until, Release: func() {
		cancel(context.Canceled)
		<-stopped
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(parent), time.Second)
		defer rcancel()
		_ = release.Run(rctx, l.cfg.Client, keys, value).Err()
	}}
}
