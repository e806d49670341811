package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
)

var _ engine.MessageState = (*State)(nil)

// Mailboxes (engine.MessageState). A sender address's mailbox is five keys in its entity's
// slot (so that CommitStorage enqueues in the same script as it writes the value and the
// storage):
//
//	osp:{<fqn>|<keys>}:m   zset    pending messages: member the ID, score the due Unix ms
//	                               (0: at once)
//	osp:{<fqn>|<keys>}:M   hash    ID → the message (engine.Envelope's binary form), pending
//	                               and in flight; #n, the last ID's number
//	osp:{<fqn>|<keys>}:k   hash    t:<token> → ID and i:<ID> → token, for pending delayed
//	                               messages
//	osp:{<fqn>|<keys>}:f   zset    the messages in flight (claimed, not released), score the
//	                               order they were claimed in (a retried message stays ahead of
//	                               a timer that fired during its back-off, whatever their IDs)
//	osp:{<fqn>|<keys>}:l   hash    the lease: o owner, e its end (Unix ms), r when the first
//	                               in-flight message may be tried again
//
// An ID is 14 hex digits of max(the previous ID + 1, the commit's Unix ms × 1024): IDs grow
// in send order within a mailbox and, since they are time based, do not come back once the
// mailbox emptied (an egress's idempotency key is the sender and the ID).
//
// One index, osp:mbox, a sorted set whose members are <fqn>|<keys> and whose scores are when
// the mailbox next needs attention (Unix ms; 0 for at once), finds the due mailboxes (DueMailboxes is one
// ZRANGE BYSCORE). On a standalone or Sentinel-managed server the scripts that change a
// mailbox set its index entry too, atomically (a script may touch keys of several slots
// there, declared in KEYS). On a Cluster the index lives in its own slot, so it cannot
// change in those scripts; it is kept right by ordering instead: a commit that sent runs ZADD LT after its
// script (the index never says later than the truth for long), and whoever finds the index
// wrong or done with a mailbox (Claim with nothing to take, Release) first ZREMs the member,
// then reads the mailbox's next time in the slot, then ZADDs it back with LT: a commit
// racing with that either committed before the read (and the read sees its messages) or
// ZADDs after the ZREM. A process that dies between its commit and its ZADD leaves a
// mailbox the index does not know: Sweep finds those on a Cluster (the engine runs it at
// start and periodically; Reindex is the same repair, anywhere).
const (
	sufMailbox  = "}:m"
	sufMessages = "}:M"
	sufTokens   = "}:k"
	sufFlight   = "}:f"
	sufLease    = "}:l"
	mailIndex   = "osp:mbox"
)

func blindArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// appendMailboxArgs appends a commit's mailbox part to the commit script's ARGV: the index
// member, the most messages the mailbox may hold after it (0: no limit), the cancellations
// and the sends.
func appendMailboxArgs(args []any, member string, c engine.StorageCommit) ([]any, error) {
	limit := 0
	if len(c.Send) > 0 {
		limit = max(c.MaxMailbox, 0)
	}
	args = append(args, member, limit, len(c.Cancel))
	for _, tok := range c.Cancel {
		args = append(args, tok)
	}
	args = append(args, len(c.Send))
	for i := range c.Send {
		env := &c.Send[i]
		b, err := env.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		args = append(args, dueMs(env.Due), env.Token, b)
	}
	return args, nil
}

func dueMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func member(fqn, keys string) string { return fqn + "|" + keys }

// mailKeys returns the keys of a mailbox's scripts — with the index last when the scripts
// can reach it (not on a Cluster) — and the mailbox's index member.
func (s *State) mailKeys(f *engine.Feature, keys string) ([]string, string) {
	tag := entityTag(f.FQN, keys)
	ks := []string{tag + sufMailbox, tag + sufMessages, tag + sufTokens, tag + sufFlight, tag + sufLease}
	if !s.cluster {
		ks = append(ks, mailIndex)
	}
	return ks, member(f.FQN, keys)
}

// indexSends tells the index that the mailbox has messages due at the earliest send's time.
func (s *State) indexSends(ctx context.Context, f *engine.Feature, keys string, sends []engine.Envelope, now time.Time) error {
	at := int64(-1)
	for i := range sends {
		d := dueMs(sends[i].Due) // 0: at once
		if at < 0 || d < at {
			at = d
		}
	}
	return s.c.ZAddLT(ctx, mailIndex, goredis.Z{Score: float64(at), Member: member(f.FQN, keys)}).Err()
}

// DueMailboxes returns up to limit mailboxes due as of now, and the earliest time of one not
// returned, in one pipeline.
func (s *State) DueMailboxes(ctx context.Context, now time.Time, limit int) ([]engine.Mailbox, time.Time, error) {
	nowMs := strconv.FormatInt(now.UnixMilli(), 10)
	var due *goredis.StringSliceCmd
	var next *goredis.ZSliceCmd
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if limit > 0 {
			due = p.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: mailIndex, Start: "-inf", Stop: nowMs, ByScore: true, Count: int64(limit)})
		}
		next = p.ZRangeArgsWithScores(ctx, goredis.ZRangeArgs{Key: mailIndex, Start: "(" + nowMs, Stop: "+inf", ByScore: true, Count: 1})
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("redis: due mailboxes: %w", err)
	}
	var out []engine.Mailbox
	if due != nil {
		for _, m := range due.Val() {
			fqn, keys, ok := strings.Cut(m, "|")
			if !ok {
				continue
			}
			out = append(out, engine.Mailbox{FQN: fqn, Keys: keys})
		}
	}
	var at time.Time
	if z := next.Val(); len(z) > 0 {
		at = time.UnixMilli(int64(z[0].Score))
	}
	return out, at, nil
}

// Claim runs claimScript; with nothing to take, it puts the mailbox's index entry right.
func (s *State) Claim(ctx context.Context, f *engine.Feature, keys, owner string, now time.Time, lease time.Duration, max int) ([]engine.Envelope, error) {
	ks, mb := s.mailKeys(f, keys)
	r, err := claimScript.Run(ctx, s.c, ks, owner, now.UnixMilli(), lease.Milliseconds(), max, mb).StringSlice()
	if err != nil {
		return nil, wrap("claim", f, err)
	}
	if len(r) == 2 && r[0] == "n" {
		if !s.cluster {
			return nil, nil // the script set the index entry
		}
		return nil, wrapped("reindex", f, s.reindex(ctx, f.FQN, keys, now, 0))
	}
	if len(r) < 1 || r[0] != "y" || len(r)%2 != 1 {
		return nil, wrap("claim", f, fmt.Errorf("%w: script replied %d fields", errCorrupt, len(r)))
	}
	out := make([]engine.Envelope, 0, len(r)/2)
	var corrupt []string
	var errs []error
	for i := 1; i+1 < len(r); i += 2 {
		env := engine.Envelope{ID: r[i]}
		if err := env.UnmarshalBinary([]byte(r[i+1])); err != nil {
			corrupt = append(corrupt, r[i])
			errs = append(errs, fmt.Errorf("message %s (%d bytes): %w", r[i], len(r[i+1]), err))
			continue
		}
		out = append(out, env)
	}
	if len(corrupt) > 0 {
		// A message that cannot be decoded can never be delivered: dropped, so that it does
		// not block its mailbox for ever, and reported (the engine logs the error). The
		// release also ends the claim: the good messages are claimed again at once.
		rerr := s.Release(ctx, f, keys, owner, corrupt, nil, time.Time{})
		return nil, wrap("claim", f, fmt.Errorf("%w: dropped %d undecodable messages of mailbox %q: %w", errCorrupt, len(corrupt), clip(keys), errors.Join(append(errs, rerr)...)))
	}
	return out, nil
}

// Release removes the mailbox from the index, runs releaseScript, and indexes it again at
// the next time the script reports.
func (s *State) Release(ctx context.Context, f *engine.Feature, keys, owner string, done []string, retry *engine.Envelope, retryAt time.Time) error {
	if s.cluster {
		if err := s.c.ZRem(ctx, mailIndex, member(f.FQN, keys)).Err(); err != nil {
			return wrap("release", f, err)
		}
	}
	now := time.Now()
	ks, mb := s.mailKeys(f, keys)
	args := []any{owner, now.UnixMilli(), retryAt.UnixMilli(), "", "", mb}
	if retry != nil {
		b, err := retry.MarshalBinary()
		if err != nil {
			return wrap("release", f, err)
		}
		args[3], args[4] = retry.ID, b
	}
	for _, id := range done {
		args = append(args, id)
	}
	next, err := releaseScript.Run(ctx, s.c, ks, args...).Int64()
	if err != nil {
		return wrap("release", f, err)
	}
	if !s.cluster {
		return nil // the script set the index entry
	}
	return s.index(ctx, f, keys, next)
}

// reindex puts the mailbox's index entry right: remove, read the next time, add it back no
// earlier than notBefore (Unix ms) with LT — a commit racing with it either committed before
// the read, or indexes its sends after the removal.
func (s *State) reindex(ctx context.Context, fqn, keys string, now time.Time, notBefore int64) error {
	if err := s.c.ZRem(ctx, mailIndex, member(fqn, keys)).Err(); err != nil {
		return fmt.Errorf("remove the index entry: %w", err)
	}
	tag := entityTag(fqn, keys)
	next, err := nextScript.Run(ctx, s.c, []string{tag + sufMailbox, tag + sufFlight, tag + sufLease}, now.UnixMilli()).Int64()
	if err != nil {
		return fmt.Errorf("read the next time: %w", err)
	}
	if next < 0 {
		return nil
	}
	if err := s.c.ZAddLT(ctx, mailIndex, goredis.Z{Score: float64(max(next, notBefore)), Member: member(fqn, keys)}).Err(); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

func (s *State) index(ctx context.Context, f *engine.Feature, keys string, next int64) error {
	if next < 0 {
		return nil
	}
	if err := s.c.ZAddLT(ctx, mailIndex, goredis.Z{Score: float64(next), Member: member(f.FQN, keys)}).Err(); err != nil {
		return wrap("index", f, err)
	}
	return nil
}

// DeferMailbox indexes the mailbox again at until, or at its next time when later; an
// empty one (its feature was dropped) leaves the index.
func (s *State) DeferMailbox(ctx context.Context, m engine.Mailbox, until time.Time) error {
	if err := s.reindex(ctx, m.FQN, m.Keys, time.Now(), until.UnixMilli()); err != nil {
		return fmt.Errorf("redis: defer the mailbox of %s: %w", m.FQN, err)
	}
	return nil
}

// Sweep indexes the mailboxes the index lost (engine.MailboxSweeper): on a Cluster, where a
// process that died between a commit and its ZADD leaves a mailbox the index does not know,
// it runs Reindex; elsewhere the scripts keep the index exact and it does nothing, so that
// the engine's periodic sweep costs a large keyspace no SCAN.
func (s *State) Sweep(ctx context.Context) error {
	if !s.cluster {
		return nil
	}
	return s.Reindex(ctx)
}

// Reindex indexes every mailbox the index does not know: one SCAN of each master for
// pending (:m) and in-flight (:f) keys, each found mailbox indexed at its next time. It is
// safe to run at any time, on every replica; an operator's repair after the index key was
// lost (Sweep runs it on a Cluster).
func (s *State) Reindex(ctx context.Context) error {
	now := time.Now()
	err := s.forEachNode(ctx, func(ctx context.Context, c goredis.UniversalClient) error {
		return scanKeys(ctx, c, keyPrefix+"*}:[mf]", func(found []string) error {
			for _, k := range found {
				rest := strings.TrimPrefix(k, keyPrefix)
				rest = strings.TrimSuffix(strings.TrimSuffix(rest, sufMailbox), sufFlight)
				fqn, keys, ok := strings.Cut(rest, "|")
				if !ok {
					continue
				}
				tag := entityTag(fqn, keys)
				next, err := nextScript.Run(ctx, s.c, []string{tag + sufMailbox, tag + sufFlight, tag + sufLease}, now.UnixMilli()).Int64()
				if err != nil {
					return err
				}
				if next >= 0 {
					if err := s.c.ZAddLT(ctx, mailIndex, goredis.Z{Score: float64(next), Member: member(fqn, keys)}).Err(); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("redis: reindex mailboxes: %w", err)
	}
	return nil
}
