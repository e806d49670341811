package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
)

// watchBuffer is how many changes a Watch stream may fall behind before it is ended with
// ResourceExhausted (the client reads too slowly; it should reconnect).
const watchBuffer = 1024

// watchHub fans the Notifier's write notifications out to the Watch streams of this
// server. It subscribes once, for the server's life, with a consumer group of its own, so
// that it sees every notification whichever replica published it, and it acknowledges each
// at once: a slow stream is ended rather than allowed to hold the notifier back. It is safe
// for concurrent use.
type watchHub struct {
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed by close
	exited chan struct{} // closed when the subscription loop returns

	mu    sync.Mutex
	byFQN map[string]map[*watcher]struct{}
}

// watcher is one Watch stream's subscription.
type watcher struct {
	fqn     string
	keys    map[string]bool // encoded keys watched; nil watches every entity
	ch      chan engine.Notification
	dropped chan struct{} // closed when ch overflowed
	lost    int           // notifications that did not fit; guarded by watchHub.mu
}

func newWatchHub(n engine.Notifier, group string, log *slog.Logger) *watchHub {
	ctx, cancel := context.WithCancel(context.Background())
	h := &watchHub{log: log, cancel: cancel, done: make(chan struct{}), exited: make(chan struct{}),
		byFQN: map[string]map[*watcher]struct{}{}}
	go h.run(ctx, n, group)
	return h
}

// run keeps the subscription up until close, resubscribing with backoff when it fails; then
// it deletes the group, which is this server's own and would otherwise hold notifications
// back in the notifier for ever.
func (h *watchHub) run(ctx context.Context, n engine.Notifier, group string) {
	defer close(h.exited)
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.DeleteGroup(dctx, group); err != nil {
			h.log.LogAttrs(dctx, slog.LevelWarn, "watch: could not delete the notifier group",
				slog.String("group", group), slog.Any("error", err))
		}
	}()
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := n.Subscribe(ctx, group, h.dispatch)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		h.log.LogAttrs(ctx, slog.LevelWarn, "watch: notifier subscription ended; resubscribing",
			slog.String("group", group), slog.Any("error", err), slog.Duration("in", backoff))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// dispatch hands a notification to the streams watching its entity. It never blocks and
// never fails, so the notifier is never held back.
func (h *watchHub) dispatch(_ context.Context, n engine.Notification) error {
	if n.Kind != engine.NotifyWrite {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.byFQN[n.FQN] {
		if w.keys != nil && !w.keys[n.EncodedKeys] {
			continue
		}
		if w.lost > 0 { // overflowed: the stream is ending
			w.lost++
			continue
		}
		select {
		case w.ch <- n:
		default:
			if w.lost == 0 {
				close(w.dropped)
			}
			w.lost++
		}
	}
	return nil
}

func (h *watchHub) add(fqn string, keys map[string]bool) *watcher {
	w := &watcher{fqn: fqn, keys: keys, ch: make(chan engine.Notification, watchBuffer), dropped: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.byFQN[fqn]
	if set == nil {
		set = map[*watcher]struct{}{}
		h.byFQN[fqn] = set
	}
	set[w] = struct{}{}
	return w
}

func (h *watchHub) remove(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if set := h.byFQN[w.fqn]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.byFQN, w.fqn)
		}
	}
}

func (h *watchHub) lost(w *watcher) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.lost
}

// watchers returns how many streams watch fqn (for tests).
func (h *watchHub) watchers(fqn string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.byFQN[fqn])
}

// close ends every Watch stream and the subscription, and waits for the latter.
func (h *watchHub) close() {
	close(h.done)
	h.cancel()
	<-h.exited
}

// serveWatch streams the changes of one feature for the entities asked for (all of them
// when none are). It sends nothing until a change. For a windowed feature, whose
// notifications carry no value, it sends the entity's window as read just after the change.
func (s *Server) serveWatch(ctx context.Context, req *connect.Request[ospreyv1.WatchRequest], stream *connect.ServerStream[ospreyv1.WatchResponse]) error {
	procedure := req.Spec().Procedure
	if s.watch == nil {
		return connect.NewError(connect.CodeUnimplemented, errors.New("Watch needs a notifier, and this server has none"))
	}
	m := req.Msg
	fqn, err := s.eng.ResolveFQN(m.GetFqn())
	if err != nil {
		return s.fail(ctx, procedure, err, fieldNames{selector: "fqn"})
	}
	f, err := s.eng.FeatureDescriptor(ctx, fqn)
	if err != nil {
		return s.fail(ctx, procedure, err, fieldNames{selector: "fqn"})
	}
	var keys map[string]bool
	if ents := m.GetEntities(); len(ents) > 0 {
		keys = make(map[string]bool, len(ents))
		for i, e := range ents {
			ek, err := engine.EncodeKeys(f.Keys, e.GetKeys())
			if err != nil {
				return s.fail(ctx, procedure, err, fieldNames{keys: fmt.Sprintf("entities[%d].keys", i)})
			}
			keys[ek] = true
		}
	}
	w := s.watch.add(f.FQN, keys)
	defer s.watch.remove(w)
	// Send the response headers now, without a message, so that the client sees the watch
	// established at once: HTTP clients (fetch in a browser, net/http under connect-go's
	// ResponseHeader and Receive) deliver a response only when its headers arrive, and a
	// quiet feature would otherwise leave the call looking unanswered until its first change.
	if err := stream.Send(nil); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case <-s.watch.done: // Close cancels streaming calls too
				return errShuttingDown()
			default:
				return ctx.Err()
			}
		case <-s.watch.done:
			return errShuttingDown()
		case n := <-w.ch:
			if err := stream.Send(s.watchResponse(ctx, f, n)); err != nil {
				return err
			}
		case <-w.dropped:
			// The hub no longer fills w.ch: deliver what it holds, then say what was lost.
			for len(w.ch) > 0 {
				if err := stream.Send(s.watchResponse(ctx, f, <-w.ch)); err != nil {
					return err
				}
			}
			return connect.NewError(connect.CodeResourceExhausted,
				fmt.Errorf("watch %s: the client read too slowly and %d changes could not be delivered; watch again", f.FQN, s.watch.lost(w)))
		}
	}
}

func errShuttingDown() error {
	return connect.NewError(connect.CodeUnavailable, errors.New("the server is shutting down; watch again"))
}

// watchResponse describes one change.
func (s *Server) watchResponse(ctx context.Context, f *engine.Feature, n engine.Notification) *ospreyv1.WatchResponse {
	out := &ospreyv1.WatchResponse{Fqn: n.FQN, Value: valueToProto(n.Value), Timestamp: timeToProto(n.Timestamp), Op: n.Op.String(),
		Outcome: outcomeToProto(n.Outcome)}
	keys, err := engine.DecodeKeys(f.Keys, n.EncodedKeys)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "watch: undecodable keys in a notification", slog.String("fqn", n.FQN), slog.Any("error", err))
		return out
	}
	out.Keys = keys
	if f.Windowed() { // the notification holds the number added; watchers see the window
		res, err := s.eng.Get(ctx, f.FQN, keys)
		if err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "watch: reading the window after a change", slog.String("fqn", n.FQN), slog.Any("error", err))
			return out
		}
		out.Value = valueToProto(res.Value)
	}
	return out
}
