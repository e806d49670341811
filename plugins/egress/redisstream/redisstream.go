// Package redisstream is the "redis-stream" egress: each message is one XADD to a Redis
// stream, trimmed approximately to a maximum length.
//
//	apiVersion: osprey.dev/v1alpha1
//	kind: Egress
//	metadata: {name: events, namespace: fraud}
//	spec:
//	  type: redis-stream
//	  config:
//	    url: redis://redis:6379/0     # or addrs: [a:6379, b:6379] (a Cluster), …
//	    stream: fraud:events          # the stream's key; required
//	    maxLen: 100000                # XADD … MAXLEN ~ 100000; omitted or 0: no trimming
//
// The connection keys are those of the redis state provider, read by the same code
// (plugins/state/redis.Options): url (redis:// or rediss://), addrs (host:port, as a list or
// separated by ','), username, password, db, tls, tls-insecure, pool-size, dial-timeout,
// read-timeout, write-timeout, master-name (Sentinel), cluster, max-retries. One of url and
// addrs is required: an egress does not default to a local server.
//
// An entry's fields are id (the message ID, the same on every attempt: delivery is at least
// once, so a consumer drops an id it has seen), egress (the egress's FQN), from (the sender's
// address, fqn{key=value,…}), timestamp (RFC 3339, UTC, nanoseconds), then the row's fields
// in name order, each value as egress.Text writes it (null fields are left out). A row field
// named like one of the first four is written as row.<name>.
//
// A WRONGTYPE reply (the key holds something other than a stream) is permanent
// (engine.ErrPermanent); every other failure — the server out of reach, the attempt's
// deadline, OOM, LOADING, a failover — is retried by the engine.
package redisstream

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/egress"
	redisstate "github.com/osprey-ml/osprey/plugins/state/redis"
)

func init() { egress.Register("redis-stream", New) }

// ownKeys are the keys of spec.config the egress reads itself.
var ownKeys = []string{"stream", "maxLen"}

// connectionKeys are the keys of spec.config handed to redisstate.Options, which checks
// them again (TestConnectionKeys keeps the two lists in step).
var connectionKeys = []string{"url", "addrs", "username", "password", "db", "tls", "tls-insecure",
	"pool-size", "dial-timeout", "read-timeout", "write-timeout", "master-name", "cluster", "max-retries"}

// envelope are the fields every entry starts with; a row field of one of these names is
// written as row.<name>.
var envelope = []string{"id", "egress", "from", "timestamp"}

// Stream is the redis-stream egress. It is safe for concurrent use.
type Stream struct {
	fqn    string
	stream string
	maxLen int64
	c      goredis.UniversalClient
}

// New is the "redis-stream" factory: it checks cfg and makes the client, without
// connecting (go-redis dials on first use), so that an egress whose server is down still
// applies.
func New(_ context.Context, cfg egress.Config) (egress.Egress, error) {
	if err := cfg.Check(slices.Concat(ownKeys, connectionKeys)...); err != nil {
		return nil, err
	}
	stream, err := cfg.String("stream", "")
	if err != nil {
		return nil, err
	}
	if stream == "" {
		return nil, fmt.Errorf("%w: %s: missing (the stream's key, e.g. osprey:alerts)", plugins.ErrInvalidConfig, egress.Path("stream"))
	}
	maxLen, err := cfg.Int("maxLen", 0)
	if err != nil {
		return nil, err
	}
	if maxLen < 0 {
		return nil, fmt.Errorf("%w: %s: %d is negative (omit it, or 0, for no trimming)", plugins.ErrInvalidConfig, egress.Path("maxLen"), maxLen)
	}
	if !cfg.Has("url") && !cfg.Has("addrs") {
		return nil, fmt.Errorf("%w: %s: missing: set url (redis://host:6379/0) or addrs (host:port, …)", plugins.ErrInvalidConfig, egress.Path("url"))
	}
	pc := plugins.Config{}
	for _, k := range connectionKeys {
		if !cfg.Has(k) {
			continue
		}
		var v string
		if k == "addrs" {
			addrs, err := cfg.Strings(k)
			if err != nil {
				return nil, err
			}
			v = strings.Join(addrs, ",")
		} else if v, err = cfg.String(k, ""); err != nil {
			return nil, err
		}
		pc[k] = v
	}
	o, err := redisstate.Options(pc)
	if err != nil {
		return nil, fmt.Errorf("spec.config: %w", err)
	}
	for _, a := range o.Addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a // no port
		}
		key := "addrs"
		if !cfg.Has("addrs") {
			key = "url"
		}
		if err := cfg.CheckHost(key, host); err != nil {
			return nil, err
		}
	}
	return &Stream{fqn: cfg.FQN, stream: stream, maxLen: maxLen, c: goredis.NewUniversalClient(o)}, nil
}

// Values returns an entry's fields and values for m (see the package documentation):
// egress is the egress's FQN.
func Values(egressFQN string, m engine.EgressMessage) []string {
	out := make([]string, 0, 2*(len(envelope)+len(m.Row)))
	out = append(out, "id", m.ID, "egress", egressFQN, "from", m.From.String(), "timestamp", egress.Time(m.Timestamp))
	for _, name := range slices.Sorted(maps.Keys(m.Row)) {
		s, ok := egress.Text(m.Row[name])
		if !ok {
			continue
		}
		field := name
		if slices.Contains(envelope, name) {
			field = "row." + name
		}
		out = append(out, field, s)
	}
	return out
}

// Emit XADDs m once, within ctx's deadline, and classifies the failure.
func (s *Stream) Emit(ctx context.Context, m engine.EgressMessage) error {
	args := &goredis.XAddArgs{Stream: s.stream, ID: "*", Values: Values(s.fqn, m)}
	if s.maxLen > 0 {
		args.MaxLen, args.Approx = s.maxLen, true
	}
	err := s.c.XAdd(ctx, args).Err()
	switch {
	case err == nil:
		return nil
	case goredis.HasErrorPrefix(err, "WRONGTYPE"):
		return fmt.Errorf("%w: egress %s: XADD %s: %w (the key holds something other than a stream)", engine.ErrPermanent, s.fqn, s.stream, err)
	case errors.Is(err, goredis.ErrClosed):
		return fmt.Errorf("egress %s: XADD %s: %w: %w", s.fqn, s.stream, egress.ErrClosed, err)
	}
	return fmt.Errorf("egress %s: XADD %s: %w", s.fqn, s.stream, err)
}

// Close closes the client.
func (s *Stream) Close() error {
	if err := s.c.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("egress %s: close: %w", s.fqn, err)
	}
	return nil
}
