package registry

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/autorefresh"
	"github.com/osprey-ml/osprey/manifest"
)

// Following a store that several replicas share (SharedStore). Every write is versioned:
// the registry remembers the version of each object as it last saw it (versions) and writes
// on condition that it is still that one, so that two replicas applying the same object at
// once end with one winner — the other's write fails with ErrConflict and its apply is
// undone — never a mix.
//
// Each replica converges on what the others change with a follower started by Restore: a
// change notification (SharedStore.Changes, a hint that may be lost) asks for the object at
// once; every SyncPeriod the store's versions are listed and every object whose version
// differs from the one this registry saw (new, replaced, deleted) is asked for; and an
// auto-refresh cache (internal/autorefresh) of the known objects re-checks them all every
// ResyncPeriod, retrying the quarantined ones. Asking for an object means, under the
// registry's lock: load it from the store and, when it differs from what this registry
// applied, restore it as Restore does (bounded by RestoreTimeout, quarantined when it fails),
// or, when it is gone, delete it from the engine.

// SharedStore is a Store several processes share: its objects carry versions, writes can be
// conditioned on them, and it announces changes. The registry follows one (see above).
// Implementations must be safe for concurrent use.
type SharedStore interface {
	Store
	// SaveVersion is Save on condition that the object's version is expect ("" meaning it is
	// not stored); it returns the new version. When the condition fails nothing changes and
	// the error wraps ErrConflict.
	SaveVersion(ctx context.Context, kind, fqn string, manifest []byte, modules map[string][]byte, expect string) (string, error)
	// DeleteVersion is Delete on condition that the object's version is expect (an object
	// not stored is deleted when expect is ""); otherwise the error wraps ErrConflict.
	DeleteVersion(ctx context.Context, kind, fqn, expect string) error
	// Versions returns the version of every stored object.
	Versions(ctx context.Context) (map[Key]string, error)
	// LoadObject loads one object (with its Version) as Load would; ok is false when it is
	// not stored.
	LoadObject(ctx context.Context, kind, fqn string) (obj StoredObject, ok bool, err error)
	// Changes delivers the keys of objects written or deleted (by any process) from the
	// moment the store was made: hints, which may be lost or repeated. The channel is
	// closed when the store is closed; the follower then stops.
	Changes() <-chan Key
}

// Defaults of the follower.
const (
	// DefaultSyncPeriod is how often the follower lists a SharedStore's versions.
	DefaultSyncPeriod = time.Second
	// DefaultResyncPeriod is how often the follower re-checks every known object.
	DefaultResyncPeriod = 10 * time.Second
)

// follower is the registry's follow of a SharedStore.
type follower struct {
	cancel context.CancelFunc
	done   sync.WaitGroup
	cache  *autorefresh.Cache[Key, string]
}

// versionOf returns the version this registry last saw of key (""; not stored). Callers
// hold mu.
func (r *Registry) versionOf(key Key) string { return r.versions[key] }

// save writes an object to the Store, on condition of its version when the Store is shared.
// Callers hold mu.
func (r *Registry) save(ctx context.Context, key Key, canonical []byte, modules map[string][]byte) error {
	if r.shared == nil {
		return r.store.Save(ctx, key.Kind, key.FQN, canonical, modules)
	}
	v, err := r.shared.SaveVersion(ctx, key.Kind, key.FQN, canonical, modules, r.versionOf(key))
	if err != nil {
		return conflictError(key, err)
	}
	r.versions[key] = v
	return nil
}

// remove deletes an object from the Store, on condition of its version when the Store is
// shared. Callers hold mu.
func (r *Registry) remove(ctx context.Context, key Key) error {
	if r.shared == nil {
		return r.store.Delete(ctx, key.Kind, key.FQN)
	}
	if err := r.shared.DeleteVersion(ctx, key.Kind, key.FQN, r.versionOf(key)); err != nil {
		return conflictError(key, err)
	}
	delete(r.versions, key)
	return nil
}

// conflictError gives a store's ErrConflict a message saying what to do; other errors are
// returned as they are.
func conflictError(key Key, err error) error {
	if !errors.Is(err, ErrConflict) {
		return err
	}
	return &kindError{kind: ErrConflict, cause: err, msg: fmt.Sprintf(
		"%s %s changed in the shared registry store since this server last saw it (another replica applied or deleted it): retry once this server has caught up (within a second or so)",
		key.Kind, key.FQN)}
}

// startFollowing starts the follower of a SharedStore. Restore calls it, holding mu.
func (r *Registry) startFollowing() error {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel}
	cache, err := autorefresh.New(autorefresh.Config[Key, string]{
		Name:          "registry",
		Sync:          r.syncBatch,
		CreateBatches: storeOrderBatches(64),
		ResyncPeriod:  r.resyncPeriod,
		Parallelism:   1, // one at a time, in store order: data sources before features
	})
	if err != nil {
		cancel()
		return err
	}
	f.cache = cache
	for key, v := range r.versions {
		if _, err := cache.GetOrCreate(key, v); err != nil {
			cancel()
			return err
		}
	}
	if err := cache.Start(ctx); err != nil {
		cancel()
		return err
	}
	f.done.Add(1)
	go func() {
		defer f.done.Done()
		defer cancel()
		r.follow(ctx, cache)
	}()
	r.follower = f
	return nil
}

// Close stops following a SharedStore and waits for the follower to end. It does nothing
// otherwise. The Registry stays usable (it no longer converges on other replicas' changes).
func (r *Registry) Close() {
	r.mu.Lock()
	f := r.follower
	r.follower = nil
	r.mu.Unlock()
	if f == nil {
		return
	}
	f.cancel()
	f.done.Wait()
	f.cache.Wait()
}

// FollowStats returns the follower's cache counters (zero without a SharedStore).
func (r *Registry) FollowStats() autorefresh.Stats {
	r.mu.Lock()
	f := r.follower
	r.mu.Unlock()
	if f == nil {
		return autorefresh.Stats{}
	}
	return f.cache.Stats()
}

// follow asks for the objects that change (notified, or found by listing the versions
// every SyncPeriod) until ctx is done or the store's changes end.
func (r *Registry) follow(ctx context.Context, cache *autorefresh.Cache[Key, string]) {
	tick := time.NewTicker(r.syncPeriod)
	defer tick.Stop()
	changes := r.shared.Changes()
	ask := func(keys ...Key) {
		for _, k := range keys {
			if _, err := cache.GetOrCreate(k, ""); err != nil {
				r.log.LogAttrs(ctx, slog.LevelError, "registry: cannot follow a stored object",
					slog.String("kind", k.Kind), slog.String("fqn", k.FQN), slog.Any("error", err))
			}
		}
		cache.Refresh(keys...)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case k, ok := <-changes:
			if !ok {
				return
			}
			ask(k)
		case <-tick.C:
			vs, err := r.shared.Versions(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.log.LogAttrs(ctx, slog.LevelWarn, "registry: cannot list the shared store's versions; retrying", slog.Any("error", err))
				}
				continue
			}
			r.mu.Lock()
			var due []Key
			for k, v := range vs {
				if r.versions[k] != v {
					due = append(due, k)
				}
			}
			for k := range r.versions {
				if _, ok := vs[k]; !ok {
					due = append(due, k)
				}
			}
			r.mu.Unlock()
			if len(due) > 0 {
				ask(due...)
			}
		}
	}
}

// storeOrderBatches sorts the objects due as the Store does (data sources first, then by
// FQN) and cuts them into batches of n.
func storeOrderBatches(n int) autorefresh.CreateBatchesFunc[Key, string] {
	cut := autorefresh.BatchesOf[Key, string](n)
	return func(ctx context.Context, snap []autorefresh.Entry[Key, string]) ([]autorefresh.Batch[Key, string], error) {
		slices.SortFunc(snap, func(a, b autorefresh.Entry[Key, string]) int {
			return cmp.Or(cmp.Compare(kindRank(a.ID.Kind), kindRank(b.ID.Kind)), strings.Compare(a.ID.FQN, b.ID.FQN))
		})
		return cut(ctx, snap)
	}
}

// syncBatch is the cache's SyncFunc: it converges on every object of the batch whose
// version in the store differs from the one this registry saw, or that is quarantined.
func (r *Registry) syncBatch(ctx context.Context, batch autorefresh.Batch[Key, string]) ([]autorefresh.SyncResponse[Key, string], error) {
	vs, err := r.shared.Versions(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry: list the shared store's versions: %w", err)
	}
	var out []autorefresh.SyncResponse[Key, string]
	var errs []error
	// Objects are synced in store order (data sources first), which suits applies; a
	// deleted data source whose features are deleted later in the batch fails at first,
	// so what fails is tried once more after the others.
	var failed autorefresh.Batch[Key, string]
	for pass := 0; pass < 2; pass++ {
		if pass == 1 {
			if len(failed) == 0 || len(failed) == len(batch) {
				break
			}
			batch, failed, errs = failed, nil, nil
		}
		for _, e := range batch {
			v, stored := vs[e.ID]
			r.mu.Lock()
			_, quarantined := r.quarantine[e.ID]
			seen := r.versions[e.ID]
			r.mu.Unlock()
			if v == seen && !quarantined {
				if !stored {
					out = append(out, autorefresh.SyncResponse[Key, string]{ID: e.ID, Action: autorefresh.Delete})
				} else if e.Item != v {
					out = append(out, autorefresh.SyncResponse[Key, string]{ID: e.ID, Item: v, Action: autorefresh.Update})
				}
				continue
			}
			now, gone, err := r.converge(ctx, e.ID)
			switch {
			case err != nil:
				errs = append(errs, err)
				failed = append(failed, e)
			case gone:
				out = append(out, autorefresh.SyncResponse[Key, string]{ID: e.ID, Action: autorefresh.Delete})
			default:
				out = append(out, autorefresh.SyncResponse[Key, string]{ID: e.ID, Item: now, Action: autorefresh.Update})
			}
		}
	}
	return out, errors.Join(errs...)
}

// converge makes this registry's engine hold what the shared store holds of key: it loads
// the object and restores it (bounded, quarantined when it fails) when it differs from what
// is applied, or deletes it from the engine when it is no longer stored. It returns the
// version now seen, or gone when the object is not stored. An error (the store unreadable,
// a data source still in use here) leaves things for the next sync.
func (r *Registry) converge(ctx context.Context, key Key) (version string, gone bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pending[key]; ok {
		return "", false, fmt.Errorf("registry: %s %s: an abandoned restore has not returned yet", key.Kind, key.FQN)
	}
	o, ok, err := r.shared.LoadObject(ctx, key.Kind, key.FQN)
	if err != nil {
		return "", false, fmt.Errorf("registry: load %s %s from the shared store: %w", key.Kind, key.FQN, err)
	}
	if !ok {
		return "", true, r.dropLocal(ctx, key)
	}
	_, quarantined := r.quarantine[key]
	if prev, had := r.stored[key]; had && !quarantined && o.Err == nil && bytes.Equal(prev.manifest, o.Manifest) {
		r.versions[key] = o.Version
		return o.Version, false, nil
	}
	defer r.retain(ctx)
	maps.Copy(r.modules, o.Modules)
	r.stored[key] = storedObject{manifest: o.Manifest, modules: slices.Sorted(maps.Keys(o.Modules))}
	r.versions[key] = o.Version
	defer r.forgetUnusedModules()
	late, release, err := r.restoreObject(ctx, o)
	if err == nil {
		// Retain the applied set before the apply's hold goes: between the two, a sweep
		// would release the module the change just applied (it is not retained yet).
		r.retain(ctx)
		release()
		r.unquarantine(key)
		r.log.LogAttrs(ctx, slog.LevelInfo, "registry: applied a change of the shared store",
			slog.String("kind", key.Kind), slog.String("fqn", key.FQN), slog.String("version", o.Version))
		return o.Version, false, nil
	}
	r.quarantineFailed(ctx, o, late, release, err)
	return o.Version, false, nil
}

// dropLocal deletes an object no longer stored from this registry and its engine. Callers
// hold mu.
func (r *Registry) dropLocal(ctx context.Context, key Key) error {
	defer r.retain(ctx)
	var err error
	if key.Kind == string(manifest.KindPlugin) {
		r.dropPlugin(key.FQN)
	} else if key.Kind == string(manifest.KindEgress) {
		r.dropEgress(ctx, key.FQN)
	} else if key.Kind == string(manifest.KindDataSource) {
		if slices.ContainsFunc(r.eng.DataSources(), func(ds *engine.DataSource) bool { return ds.FQN == key.FQN }) {
			err = r.eng.DeleteDataSource(ctx, key.FQN)
		}
	} else if slices.ContainsFunc(r.eng.Features(), func(f *engine.Feature) bool { return f.FQN == key.FQN }) {
		err = r.eng.Forget(ctx, key.FQN) // the deleting replica dropped shared values
	}
	if err != nil {
		return fmt.Errorf("registry: delete %s %s, deleted from the shared store: %w", key.Kind, key.FQN, err)
	}
	delete(r.stored, key)
	delete(r.versions, key)
	r.unquarantine(key)
	r.forgetUnusedModules()
	r.log.LogAttrs(ctx, slog.LevelInfo, "registry: deleted, as the shared store did", slog.String("kind", key.Kind), slog.String("fqn", key.FQN))
	return nil
}
