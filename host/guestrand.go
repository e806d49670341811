package host

import (
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
)

// guestRand is an instance's WASI random source: a ChaCha8 stream seeded from crypto/rand
// (a CSPRNG, and several times faster than reading crypto/rand for large buffers), handed
// out in chunks so that a stopped call gets no more: random_get of a whole memory costs at
// most one chunk past the call's deadline. Only the goroutine running the instance's call
// uses it.
type guestRand struct {
	inst *instance
	src  *rand.ChaCha8
}

// randChunk is how much is generated between two checks of the stop.
const randChunk = 64 << 10

var errStoppedRand = errors.New("random_get: the call was stopped")

func newGuestRand(inst *instance) *guestRand {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails (Go 1.24+)
	return &guestRand{inst: inst, src: rand.NewChaCha8(seed)}
}

// Read fills p, or stops early with an error once the running call was stopped (WASI
// random_get then returns EIO to the guest, which traps at its next check).
func (r *guestRand) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if r.inst.stopped() {
			return n, errStoppedRand
		}
		k := min(len(p)-n, randChunk)
		_, _ = r.src.Read(p[n : n+k])
		n += k
	}
	return n, nil
}
