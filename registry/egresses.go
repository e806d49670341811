package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/osprey-ml/osprey/manifest"
)

// Egresses is what the registry needs of an egress set (*egress.Set of plugins/egress
// satisfies it): an Egress manifest is loaded — its type's configuration checked, its
// client made — outside the registry's lock (Load), and applied under it (Swap); Delete
// removes one. The handles are opaque to the registry; it closes those it no longer needs (a
// replaced or deleted egress once the change is final, a loaded one that was not applied).
// The registry knows no egress type: what Load refuses, it reports as the object's error.
type Egresses interface {
	// Load creates the egress e describes, without applying it.
	Load(ctx context.Context, e *manifest.Egress) (io.Closer, error)
	// Swap makes loaded (from Load) the egress its FQN names and returns the handle it
	// replaced (nil if none), not closed.
	Swap(fqn string, loaded io.Closer) (previous io.Closer)
	// Delete removes the egress fqn names and returns its handle (nil if none), not closed.
	Delete(fqn string) (previous io.Closer)
}

// appliedEgress is an egress the registry applied.
type appliedEgress struct {
	m         *manifest.Egress
	canonical []byte
	loaded    io.Closer
}

// checkEgressKind refuses an Egress manifest when the registry has no Egresses. Callers
// hold mu.
func (r *Registry) checkEgressKind(st *applyStep) error {
	if r.egs != nil {
		return nil
	}
	return &kindError{kind: ErrUnsupportedKind, msg: fmt.Sprintf(
		"%s: Egress %s: this server has no egresses configured, so it cannot apply Egress manifests", st.m.Pos, st.key.FQN)}
}

// loadEgress loads a request's egress (Egresses.Load) unless it is identical to the
// applied one.
func (r *Registry) loadEgress(ctx context.Context, st *applyStep) error {
	if st.m.Egress == nil || st.same {
		return nil
	}
	loaded, err := r.egs.Load(ctx, st.m.Egress)
	if err != nil {
		return err
	}
	st.loaded = loaded
	return nil
}

// applyEgress applies a request's egress and returns how to undo it. Callers hold mu.
func (r *Registry) applyEgress(ctx context.Context, st *applyStep) (func(context.Context), error) {
	e := st.m.Egress
	if st.loaded == nil { // changed since the request was checked: load it now
		if err := r.loadEgress(ctx, st); err != nil {
			return nil, err
		}
	}
	fqn := e.FQN
	prev := r.egresses[fqn]
	r.egs.Swap(fqn, st.loaded)
	r.egresses[fqn] = &appliedEgress{m: e, canonical: st.canonical, loaded: st.loaded}
	if prev != nil {
		st.replaced = prev.loaded
	}
	return func(context.Context) {
		st.replaced = nil
		if prev != nil {
			r.egs.Swap(fqn, prev.loaded)
			r.egresses[fqn] = prev
		} else {
			r.egs.Delete(fqn)
			delete(r.egresses, fqn)
		}
	}, nil
}

// deleteEgress deletes the applied egress name names, if there is one. Messages on their
// way to it fail from then on (and are retried by the engine, until it is applied again or
// they run out of attempts). Callers hold mu.
func (r *Registry) deleteEgress(ctx context.Context, name string) (Key, bool, error) {
	fqn, err := r.eng.ResolveFQN(name)
	if err != nil {
		return Key{}, false, nil
	}
	key := Key{string(manifest.KindEgress), fqn}
	if r.egresses[fqn] == nil {
		return key, false, nil
	}
	if err := r.unstore(ctx, key); err != nil {
		return key, true, fmt.Errorf("registry store: nothing was deleted: %w", err)
	}
	r.dropEgress(ctx, fqn)
	r.log.LogAttrs(ctx, slog.LevelInfo, "registry: deleted", slog.String("kind", key.Kind), slog.String("fqn", fqn))
	return key, true, nil
}

// dropEgress removes an applied egress and closes it. Callers hold mu.
func (r *Registry) dropEgress(ctx context.Context, fqn string) {
	ae := r.egresses[fqn]
	if ae == nil {
		return
	}
	r.egs.Delete(fqn)
	delete(r.egresses, fqn)
	r.closeHandle(ctx, string(manifest.KindEgress), fqn, ae.loaded)
}

// closeHandle closes a handle the registry no longer needs, logging a failure (the change
// it ends is made: there is nothing to undo).
func (r *Registry) closeHandle(ctx context.Context, kind, fqn string, h io.Closer) {
	if err := h.Close(); err != nil {
		r.log.LogAttrs(ctx, slog.LevelWarn, "registry: closing a replaced or deleted object failed",
			slog.String("kind", kind), slog.String("fqn", fqn), slog.Any("error", err))
	}
}

// restoreEgress loads and applies a stored egress (at Restore, or a change of the shared
// store), replacing the one applied. ctx bounds the load. Callers hold mu.
func (r *Registry) restoreEgress(ctx context.Context, m manifest.Manifest) error {
	e := m.Egress
	if r.egs == nil {
		return fmt.Errorf("%w: this server has no egresses configured", ErrUnsupportedKind)
	}
	canonical, err := manifest.Marshal(m)
	if err != nil {
		return err
	}
	loaded, err := r.egs.Load(ctx, e)
	if err != nil {
		return err
	}
	prev := r.egresses[e.FQN]
	r.egs.Swap(e.FQN, loaded)
	r.egresses[e.FQN] = &appliedEgress{m: e, canonical: canonical, loaded: loaded}
	if prev != nil {
		r.closeHandle(ctx, string(manifest.KindEgress), e.FQN, prev.loaded)
	}
	return nil
}

// Egresses returns the manifests of the applied egresses of one namespace, or of all when
// namespace is "", sorted by FQN. They are the registry's: do not modify them.
func (r *Registry) Egresses(namespace string) []*manifest.Egress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return inNamespace(r.egresses, namespace, func(ae *appliedEgress) *manifest.Egress { return ae.m })
}
