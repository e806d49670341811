package host

import (
	"context"
	"errors"
	"fmt"
	"unique"

	"github.com/osprey-ml/osprey/abi"
	"github.com/osprey-ml/osprey/engine"
)

// Configuration (ABI 1.1, ABI.md §4.4). A program's spec.builder.config and a middleware's
// config reach a guest that exports osprey_configure once per instance and object, not in
// every call: an instance remembers the configuration it was given last, and a call whose
// object has another one delivers it first. Configurations are interned (unique.Handle), so
// that "is this instance configured for this call" is one pointer comparison on the hot
// path, and objects with equal configurations share instances without re-delivering.
//
// A module's pool serves every object that uses the module with the same memory limit,
// whatever their configurations: keying pools by configuration too would multiply the
// instances (each a Go runtime of megabytes) and the budget's floors. Instead the pool
// prefers an idle instance already configured for the call (pool.get), so objects that
// share a module settle on their own instances and re-deliver only when the pool is short.

// hostConfigKeys are the config keys the host consumes itself; they are not delivered to
// the guest.
var hostConfigKeys = map[string]bool{"memoryLimit": true}

// guestConfig is an interned configure call (abi.ConfigureCall's encoding), ready to be
// written into guest memory. The zero value is "none delivered".
type guestConfig = unique.Handle[string]

// configOf encodes a manifest's config for the guest: every key but the host's, sorted.
// path names the field in errors.
func configOf(cfg map[string]string, path string) (guestConfig, error) {
	guest := make(map[string]string, len(cfg))
	for k, v := range cfg {
		if !hostConfigKeys[k] {
			guest[k] = v
		}
	}
	b := abi.AppendConfigureCall(nil, &abi.ConfigureCall{Config: abi.SortedConfig(guest)})
	if len(b) > abi.MaxMessageSize {
		return guestConfig{}, fmt.Errorf("%s: %d bytes encoded, more than the ABI's %d-byte limit (ABI.md §6)", path, len(b), abi.MaxMessageSize)
	}
	return unique.Make(string(b)), nil
}

// ErrConfigRefused: a guest's osprey_configure refused the configuration it was given
// (its message says why). Returned when the feature is applied; it also matches
// engine.ErrInvalidFeature.
var ErrConfigRefused = errors.New("the guest refused its configuration")

// configRefused is a guest's refusal, with its message.
type configRefused struct{ msg string }

func (e configRefused) Error() string { return ErrConfigRefused.Error() + ": " + e.msg }

// Is makes a refusal match ErrConfigRefused and engine.ErrInvalidFeature.
func (e configRefused) Is(target error) bool {
	return target == ErrConfigRefused || target == engine.ErrInvalidFeature
}

// configure delivers cfg to the instance through osprey_configure. The caller has armed the
// instance and discards it on error: a trap, a malformed response, or a refusal
// (configRefused).
func (inst *instance) configure(ctx context.Context, cfg guestConfig) error {
	s := cfg.Value()
	ptr, err := inst.input(ctx, len(s))
	if err != nil {
		return inst.m.callError(ctx, inst, abi.ExportAlloc, err)
	}
	inst.mem.WriteString(ptr, s)
	inst.stack[0], inst.stack[1] = uint64(ptr), uint64(len(s))
	inst.cfg = guestConfig{} // until it is known to have it
	err = inst.configureFn.CallWithStack(ctx, inst.stack[:])
	if err == nil && inst.stopped() {
		err = errors.New("stopped")
	}
	if err != nil {
		return inst.m.callError(ctx, inst, abi.ExportConfigure, err)
	}
	packed := inst.stack[0]
	outPtr, outLen := uint32(packed>>32), uint32(packed)
	out, ok := inst.mem.Read(outPtr, outLen)
	if !ok || outLen == 0 || outLen > abi.MaxMessageSize {
		return fmt.Errorf("%w: %s returned a response at %#x (%d bytes), outside memory, empty or too large", ErrTrap, abi.ExportConfigure, outPtr, outLen)
	}
	var d abi.Decoder
	d.Reset(out)
	r := d.Response()
	if err := d.Done(); err != nil {
		return fmt.Errorf("%w: %s: malformed response: %v", ErrTrap, abi.ExportConfigure, err)
	}
	if r.Status != abi.StatusOK {
		return configRefused{msg: r.Message}
	}
	inst.cfg = cfg
	return nil
}

// checkConfig delivers cfg to an instance of m when the object using it is applied, so that
// a configuration the guest refuses fails the apply rather than every call. A module
// without osprey_configure (ABI 1.0) takes no configuration: there is nothing to check.
func (m *module) checkConfig(ctx context.Context, cfg guestConfig) error {
	if !m.exports[abi.ExportConfigure] {
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, m.h.cfg.initTimeout)
	defer cancel()
	inst, err := m.pool.get(ictx, cfg)
	if err != nil {
		return err
	}
	if inst.cfg == cfg {
		m.pool.put(inst)
		return nil
	}
	inst.arm(ictx)
	err = inst.configure(ictx, cfg)
	inst.disarm()
	if err != nil {
		m.pool.discard(inst)
		var refused configRefused
		if errors.As(err, &refused) {
			return refused
		}
		return fmt.Errorf("%w: %w", ErrModule, err)
	}
	m.pool.put(inst)
	return nil
}
