package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/gobwas/glob"

	"github.com/osprey-ml/osprey/host"
	"github.com/osprey-ml/osprey/host/extism"
)

// pluginPolicyFlags are the operator's ceiling on every Extism plugin (extism.Policy), the
// flags of osprey serve, osprey dev and osprey plugin call.
type pluginPolicyFlags struct {
	AllowedHosts string        `yaml:"plugin-allowed-hosts"`
	MaxTimeout   time.Duration `yaml:"plugin-max-timeout"`
	MaxMemory    string        `yaml:"plugin-max-memory"`
	Instances    int           `yaml:"plugin-instances"`
	MemoryBudget string        `yaml:"plugin-memory-budget"`
}

func (p *pluginPolicyFlags) register(fs *flag.FlagSet) {
	def := extism.DefaultPolicy
	fs.StringVar(&p.AllowedHosts, "plugin-allowed-hosts", "", "hosts plugins may declare for HTTP, comma-separated: exact names, or globs such as *.example.com; empty: no plugin may make HTTP requests (env OSPREY_PLUGIN_ALLOWED_HOSTS)")
	fs.DurationVar(&p.MaxTimeout, "plugin-max-timeout", def.Max.Timeout, "the longest spec.limits.timeout a plugin may ask for (env OSPREY_PLUGIN_MAX_TIMEOUT)")
	fs.StringVar(&p.MaxMemory, "plugin-max-memory", "64Mi", "the most memory a plugin may ask for (spec.limits.memoryPages), per linear memory (env OSPREY_PLUGIN_MAX_MEMORY)")
	fs.IntVar(&p.Instances, "plugin-instances", def.Instances, "the most instances of one plugin, i.e. its concurrent calls (env OSPREY_PLUGIN_INSTANCES)")
	fs.StringVar(&p.MemoryBudget, "plugin-memory-budget", "", "the most memory all plugin instances together may reserve (each its two memories at its limit), e.g. 2Gi; empty: a quarter of the machine's (env OSPREY_PLUGIN_MEMORY_BUDGET)")
}

// policy returns the policy the flags set, or an error naming the flag at fault. A zero
// field keeps extism.DefaultPolicy's.
func (p *pluginPolicyFlags) policy() (extism.Policy, error) {
	pol := extism.DefaultPolicy
	if p.MaxTimeout < 0 {
		return pol, fmt.Errorf("plugin-max-timeout: %v: want a positive duration", p.MaxTimeout)
	}
	if p.MaxTimeout > 0 {
		pol.Max.Timeout = p.MaxTimeout
	}
	if p.MaxMemory != "" {
		size, err := host.ParseSize(p.MaxMemory)
		if err != nil {
			return pol, fmt.Errorf("plugin-max-memory: %w", err)
		}
		const page = 64 << 10
		if size < page || size > 65536*page {
			return pol, fmt.Errorf("plugin-max-memory: %s: want between 64Ki (one page) and 4Gi", p.MaxMemory)
		}
		pol.Max.MemoryPages = uint32(size / page)
	}
	if p.Instances < 0 || p.Instances > 1024 {
		return pol, fmt.Errorf("plugin-instances: %d: want between 1 and 1024", p.Instances)
	}
	if p.Instances > 0 {
		pol.Instances = p.Instances
	}
	budget := host.DefaultMemoryBudget()
	if p.MemoryBudget != "" {
		size, err := host.ParseSize(p.MemoryBudget)
		if err != nil {
			return pol, fmt.Errorf("plugin-memory-budget: %w", err)
		}
		if size < 2*64<<10*16 {
			return pol, fmt.Errorf("plugin-memory-budget: %s: less than one instance of the smallest plugin (2 MiB)", p.MemoryBudget)
		}
		budget = int64(size)
	}
	pol.Budget = extism.NewBudget(budget)
	for i, h := range strings.Split(p.AllowedHosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/:@ ") {
			return pol, fmt.Errorf("plugin-allowed-hosts: entry %d, %q: want a host name or a glob of one, without scheme, port or path", i, h)
		}
		if _, err := glob.Compile(h); err != nil {
			return pol, fmt.Errorf("plugin-allowed-hosts: entry %d, %q: not a valid pattern: %v", i, h, err)
		}
		pol.AllowedHosts = append(pol.AllowedHosts, h)
	}
	return pol, nil
}
