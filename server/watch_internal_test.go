package server

import (
	"context"
	"testing"

	"github.com/osprey-ml/osprey/engine"
)

// TestWatchHubOverflow: a stream that falls behind is marked, and then gets nothing more.
func TestWatchHubOverflow(t *testing.T) {
	h := &watchHub{byFQN: map[string]map[*watcher]struct{}{}}
	all := h.add("a.b", nil)
	one := h.add("a.b", map[string]bool{"k1": true})
	other := h.add("a.c", nil)
	for i := range watchBuffer + 5 {
		keys := "k2"
		if i == 0 {
			keys = "k1"
		}
		h.dispatch(context.Background(), engine.Notification{Kind: engine.NotifyWrite, FQN: "a.b", EncodedKeys: keys})
	}
	h.dispatch(context.Background(), engine.Notification{Kind: engine.NotifyCollect, FQN: "a.c"})
	select {
	case <-all.dropped:
	default:
		t.Fatal("the overflowing stream was not marked")
	}
	if h.lost(all) != 5 || len(all.ch) != watchBuffer {
		t.Fatalf("lost %d, buffered %d", h.lost(all), len(all.ch))
	}
	if len(one.ch) != 1 || h.lost(one) != 0 || len(other.ch) != 0 {
		t.Fatalf("filtered stream got %d, other %d", len(one.ch), len(other.ch))
	}
	h.remove(all)
	h.remove(one)
	if h.watchers("a.b") != 0 || h.watchers("a.c") != 1 {
		t.Fatal("remove")
	}
}
