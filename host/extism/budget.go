package extism

import (
	"fmt"
	"sync/atomic"
)

// Budget bounds the memory the instances of every plugin loaded with it may reserve
// together, as the Wasm host's budget bounds its guests': an instance reserves its ceiling —
// two linear memories, the plugin's and the Extism kernel's, at the plugin's MemoryPages —
// when it is made, and releases it when it is closed. An instance that does not fit is not
// made: the call (or the load) fails with ErrLimit, naming the budget. Share one Budget
// between the plugins of a server (Policy.Budget); it is safe for concurrent use.
type Budget struct {
	total int64
	used  atomic.Int64
}

// NewBudget returns a budget of total bytes.
func NewBudget(total int64) *Budget { return &Budget{total: total} }

// Total returns the budget's size in bytes.
func (b *Budget) Total() int64 { return b.total }

// Used returns the bytes the live instances reserve.
func (b *Budget) Used() int64 { return b.used.Load() }

// reserve takes n bytes, or reports that they do not fit.
func (b *Budget) reserve(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.total {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *Budget) release(n int64) { b.used.Add(-n) }

// instanceBytes is what one instance of p reserves.
func (p *Plugin) instanceBytes() int64 { return 2 * int64(p.limits.MemoryPages) * 64 << 10 }

// reserveInstance reserves an instance's memory in p's budget, if it has one.
func (p *Plugin) reserveInstance() error {
	if p.budget == nil {
		return nil
	}
	n := p.instanceBytes()
	if !p.budget.reserve(n) {
		return fmt.Errorf("plugin %s: a new instance needs %d MiB, and the plugins' memory budget of %d MiB has %d MiB in use: %w",
			p.name, n>>20, p.budget.total>>20, p.budget.Used()>>20, ErrLimit)
	}
	return nil
}
