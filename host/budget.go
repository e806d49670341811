package host

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// budget is the host's one budget for guest memory: every instance's linear memory and
// tables, of every module, count against it (docs/sandbox.md).
//
// An instance is charged its ceiling — the module's memory limit plus its tables' maximum
// size — while it runs a call, since it may grow to it, and its actual memory while it is
// idle in a pool. When a charge does not fit, idle instances are evicted, least recently
// used first, across all modules; when it still does not fit the call or apply fails with
// ErrExhausted. Each compiled module also reserves one instance's ceiling for as long as it
// is loaded ("floor"), so an apply is refused when the modules applied could not each run
// one call at once.
//
// Safe for concurrent use. Lock order: a pool's mutex is never held while calling budget
// methods that evict (reserve), since eviction takes pool mutexes.
type budget struct {
	total int64

	mu     sync.Mutex
	used   int64 // charged to live instances
	floors int64 // reserved by loaded modules
	idle   idleList
}

func newBudget(total int64) *budget { return &budget{total: total} }

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
	for {
		b.mu.Lock()
		if n <= 0 || b.used+n <= b.total {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		victim := b.idle.oldest(keep)
		b.mu.Unlock()
		if victim == nil {
			return fmt.Errorf("%w: %s of guest memory in use, %s more needed, budget %s", ErrExhausted,
				formatBytes(b.inUse()), formatBytes(n), formatBytes(b.total))
		}
		victim.m.pool.evict(victim)
	}
}

func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// idleList links the idle instances of all pools, least recently used first.
type idleList struct{ head, tail *instance }

func (l *idleList) push(inst *instance) {
	inst.prevIdle, inst.nextIdle = l.tail, nil
	if l.tail != nil {
		l.tail.nextIdle = inst
	} else {
		l.head = inst
	}
	l.tail = inst
	inst.listed = true
}

func (l *idleList) remove(inst *instance) {
	if !inst.listed {
		return
	}
	if inst.prevIdle != nil {
		inst.prevIdle.nextIdle = inst.nextIdle
	} else {
		l.head = inst.nextIdle
	}
	if inst.nextIdle != nil {
		inst.nextIdle.prevIdle = inst.prevIdle
	} else {
		l.tail = inst.prevIdle
	}
	inst.prevIdle, inst.nextIdle, inst.listed = nil, nil, false
}

func (l *idleList) oldest(keep *instance) *instance {
	for inst := l.head; inst != nil; inst = inst.nextIdle {
		if inst != keep {
			return inst
		}
	}
	return nil
}

// listIdle and unlistIdle keep the budget's idle list in step with the pools.
func (b *budget) listIdle(inst *instance) {
	b.mu.Lock()
	b.idle.push(inst)
	b.mu.Unlock()
}

func (b *budget) unlistIdle(inst *instance) {
	b.mu.Lock()
	b.idle.remove(inst)
	b.mu.Unlock()
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
