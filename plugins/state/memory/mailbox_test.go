package memory

import (
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
)

// TestMailboxHeapBounded: a mailbox emptied and filled again many times (a long timer armed
// and cancelled per event) does not leave a due-heap entry behind each time: the entries of
// mailboxes that went are dropped well before they come up.
func TestMailboxHeapBounded(t *testing.T) {
	s := New(WithJanitorInterval(0))
	defer s.Close()
	f := feature("heap.f", engine.PrimitiveInt)
	now := time.Now()
	timer := engine.Envelope{To: engine.Address{FQN: f.FQN, Keys: engine.Keys{"id": "b"}}, Value: engine.Int(1), Token: "t", Due: now.Add(300 * 24 * time.Hour), Timestamp: now, Hops: 1}
	for range 10_000 {
		for _, c := range []engine.StorageCommit{{Blind: true, Send: []engine.Envelope{timer}}, {Blind: true, Cancel: []string{"t"}}} {
			if _, _, err := s.CommitStorage(ctx, f, "a", c); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.mail.mu.Lock()
	n := len(s.mail.due)
	s.mail.mu.Unlock()
	if n > 1000 {
		t.Fatalf("after 10000 timers armed and cancelled, the due heap holds %d entries for no mailbox", n)
	}
}
