package host

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// budget is the host's one budget for guest memory: every instance's linear memory and
// tables, of every module, count against it (docs/sandbox.md).
//
// An instance is charged its ceiling — the module's memory limit plus its tables' maximum
// size — while it runs a call, since it may grow to it. An idle one stays charged so until
// the room is needed: when a charge does not fit, idle instances are first charged down to
// their actual memory, then evicted, least recently used first (by the deadline of their
// last call), across all modules; when it still does not fit the call or apply fails with
// ErrExhausted. So a steady call takes no accounting at all, and the charge stays an upper
// bound of what guests hold. Each compiled module also reserves one
// instance's ceiling for as long as it is loaded ("floor"), so an apply is refused when the
// modules applied could not each run one call at once.
//
// A charge is one atomic add; only a charge that does not fit takes the mutex, to reclaim. Safe for concurrent use. Lock order:
// mu, then Host.mu (to list the pools), then a pool's mutex; nobody holding a pool's mutex
// or Host.mu calls charge with a positive amount.
type budget struct {
	total int64
	pools func() []*pool // the pools of the loaded modules (Host.pools)

	used atomic.Int64 // charged to live instances

	mu     sync.Mutex // serialises evictions; guards floors
	floors int64      // reserved by loaded modules
}

func newBudget(total int64, pools func() []*pool) *budget {
	return &budget{total: total, pools: pools}
}

// reserveFloor reserves n bytes for a module being loaded, or fails with ErrExhausted.
func (b *budget) reserveFloor(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.floors+n > b.total {
		return fmt.Errorf("%w: the modules loaded reserve %s and this one needs %s more (one instance at its memory limit); the budget is %s",
			ErrExhausted, formatBytes(b.floors), formatBytes(n), formatBytes(b.total))
	}
	b.floors += n
	return nil
}

// releaseFloor gives back what reserveFloor took.
func (b *budget) releaseFloor(n int64) {
	b.mu.Lock()
	b.floors -= n
	b.mu.Unlock()
}

// charge adds n bytes (which may be negative) to what live instances use, evicting idle
// instances (other than keep) while it does not fit. It fails with ErrExhausted, charging
// nothing, when evicting every idle instance would not make room.
func (b *budget) charge(n int64, keep *instance) error {
	if n <= 0 {
		b.used.Add(n)
		return nil
	}
	if b.used.Add(n) <= b.total {
		return nil
	}
	b.used.Add(-n)
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.used.Add(n) <= b.total {
			return nil
		}
		b.used.Add(-n)
		if b.shrinkIdle() {
			continue
		}
		victim := b.oldestIdle(keep)
		if victim == nil {
			return fmt.Errorf("%w: %s of guest memory in use, %s more needed, budget %s", ErrExhausted,
				formatBytes(b.used.Load()), formatBytes(n), formatBytes(b.total))
		}
		victim.m.pool.evict(victim)
	}
}

// shrinkIdle charges every idle instance down to its actual memory and reports whether that
// gave anything back. Callers hold mu.
func (b *budget) shrinkIdle() bool {
	freed := false
	for _, p := range b.pools() {
		p.mu.Lock()
		for _, inst := range p.idle {
			if idle := inst.idleBytes(); idle < inst.charged {
				b.used.Add(idle - inst.charged)
				inst.charged = idle
				freed = true
			}
		}
		p.mu.Unlock()
	}
	return freed
}

// oldestIdle finds the idle instance, other than keep, whose last call had the earliest
// deadline. Callers hold mu.
func (b *budget) oldestIdle(keep *instance) *instance {
	var oldest *instance
	for _, p := range b.pools() {
		p.mu.Lock()
		for _, inst := range p.idle {
			if inst != keep && (oldest == nil || inst.lastDue < oldest.lastDue) {
				oldest = inst
			}
		}
		p.mu.Unlock()
	}
	return oldest
}

// DefaultMemoryBudget returns the default budget for all guest memory: a quarter of the
// machine's memory (or of the cgroup's limit, when lower), or 2 GiB when neither can be
// read.
func DefaultMemoryBudget() int64 {
	total := memTotal()
	if lim := cgroupLimit(); lim > 0 && (total == 0 || lim < total) {
		total = lim
	}
	if total <= 0 {
		return 2 << 30
	}
	return total / 4
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

func cgroupLimit() int64 {
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0 // "max"
	}
	return n
}

// formatBytes writes n in MiB (or bytes below one).
func formatBytes(n int64) string {
	if n >= 1<<20 || n <= -1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}
