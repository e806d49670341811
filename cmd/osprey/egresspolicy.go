package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/osprey-ml/osprey/plugins/egress"
)

// egressPolicyFlags are the operator's ceiling on every egress (egress.Policy), the flags
// of osprey serve and osprey dev.
type egressPolicyFlags struct {
	AllowedHosts string `yaml:"egress-allowed-hosts"`
}

func (p *egressPolicyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.AllowedHosts, "egress-allowed-hosts", "", "hosts an Egress may connect to (a webhook's url, a Redis stream's url or addrs), comma-separated: exact names or IP addresses, or globs such as *.example.com; empty: any host (env OSPREY_EGRESS_ALLOWED_HOSTS; see docs/egress.md)")
}

// policy returns the policy the flags set, or an error naming the flag at fault.
func (p *egressPolicyFlags) policy() (egress.Policy, error) {
	var pol egress.Policy
	for _, h := range strings.Split(p.AllowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			pol.AllowedHosts = append(pol.AllowedHosts, h)
		}
	}
	if err := pol.Validate(); err != nil {
		return egress.Policy{}, fmt.Errorf("egress-allowed-hosts: %w", err)
	}
	return pol, nil
}
