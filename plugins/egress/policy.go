package egress

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/gobwas/glob"
)

// Policy is the operator's ceiling on every egress a Set loads (osprey serve's
// --egress-allowed-hosts): an Egress manifest comes from whoever may apply manifests, and
// names the address the server connects to.
type Policy struct {
	// AllowedHosts are the hosts an egress may connect to: host names (an IP address is a
	// name too), or glob patterns of them (*.example.com; github.com/gobwas/glob, so '*'
	// spans dots too), compared case-insensitively. Empty: every host. The check is made
	// on the name the configuration gives, when the egress is applied (a name that
	// resolves elsewhere later is not seen; redirects are not followed).
	AllowedHosts []string
}

// Validate reports a pattern of AllowedHosts that does not compile, or one that is not a
// host name (a scheme, a port or a path in it).
func (p Policy) Validate() error {
	for i, h := range p.AllowedHosts {
		if h = strings.TrimSpace(h); h == "" || strings.ContainsAny(h, "/:@ ") {
			return fmt.Errorf("egress policy: allowed host %d, %q: want a host name or a glob of one, without scheme, port or path", i, p.AllowedHosts[i])
		}
		if _, err := glob.Compile(strings.ToLower(h)); err != nil {
			return fmt.Errorf("egress policy: allowed host %d, %q: not a valid pattern: %v", i, h, err)
		}
	}
	return nil
}

// Allows reports whether an egress may connect to host (a name or an IP address, without
// port or brackets).
func (p Policy) Allows(host string) bool {
	if len(p.AllowedHosts) == 0 {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, a := range p.AllowedHosts {
		a = strings.ToLower(strings.TrimSpace(a))
		if a == host {
			return true
		}
		if g, err := glob.Compile(a); err == nil && g.Match(host) {
			return true
		}
	}
	return false
}

// CheckHost returns an error naming the config key when the policy does not allow host.
// The error wraps plugins.ErrInvalidConfig.
func (c Config) CheckHost(key, host string) error {
	if c.Policy.Allows(host) {
		return nil
	}
	return c.invalid(key, "host %q is not allowed by this server's egress policy (it allows %s; see --egress-allowed-hosts)",
		host, strings.Join(c.Policy.AllowedHosts, ", "))
}

// ErrForbiddenAddress: an egress's connection resolved to an address no egress may reach,
// whatever the policy: link-local (169.254.0.0/16, where clouds serve instance metadata and
// credentials, and fe80::/10), multicast or unspecified.
var ErrForbiddenAddress = errors.New("address forbidden to egresses")

// Forbidden reports whether ip is an address no egress may connect to (ErrForbiddenAddress).
func Forbidden(ip net.IP) bool {
	return ip == nil || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified()
}

// Dialer returns a net.Dialer whose connections refuse forbidden addresses (Forbidden), as
// resolved: a host name that resolves to one is refused too, so DNS cannot smuggle a
// webhook to the metadata service.
func Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("%w: %q", ErrForbiddenAddress, address)
			}
			if Forbidden(net.ParseIP(host)) {
				return fmt.Errorf("%w: %s (link-local, multicast or unspecified)", ErrForbiddenAddress, host)
			}
			return nil
		}}
}
