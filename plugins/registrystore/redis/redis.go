// Package redis is the "redis" registry store: the registry's objects and modules in Redis
// (standalone, Sentinel or Cluster, through go-redis' UniversalClient), shared by every
// replica. It is a registry.SharedStore: writes are versioned (a compare-and-set in a Lua
// script), and every write is announced on a Pub/Sub channel so that the other replicas'
// registries converge at once (they also list the versions periodically, since Pub/Sub
// loses messages while a subscriber is away).
//
// Importing it registers it (plugins.RegisterRegistryStore) with the config keys:
//
//	url       redis://[user:password@]host:port[/db]; the keys below override it
//	addrs     host:port of the servers, separated by ",", ";" or spaces (on the osprey
//	          serve command line, where --registry-config splits on ",", use ";")
//	master-name  the Sentinel master name (with Sentinel addresses in addrs)
//	username, password, db
//	prefix    the key prefix (default "osprey:registry")
//	timeout   per-command timeout (default 5s)
//
// Key layout, every key in one Cluster hash slot ({prefix}):
//
//	{prefix}:versions          hash  "<Kind>/<fqn>" → version
//	{prefix}:obj:<Kind>/<fqn>  hash  manifest, modules (space-separated hex digests), version
//	{prefix}:mod:<hex>         string the module bytes, sha256 <hex>, stored once
//	{prefix}:modrefs           hash  <hex> → number of objects naming the module
//	{prefix}:seq               counter the versions are drawn from (unique across deletes)
//	{prefix}:changes           Pub/Sub channel: "<Kind>/<fqn>" after every write
package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/internal/moduleref"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/registry"
)

func init() {
	plugins.RegisterRegistryStore("redis", func(ctx context.Context, cfg plugins.Config) (registry.Store, error) {
		if err := cfg.Check("url", "addrs", "master-name", "username", "password", "db", "prefix", "timeout"); err != nil {
			return nil, err
		}
		o := Options{Prefix: cfg.String("prefix", "")}
		if u := cfg.String("url", ""); u != "" {
			po, err := goredis.ParseURL(u)
			if err != nil {
				return nil, fmt.Errorf("%w: key %q: %v", plugins.ErrInvalidConfig, "url", err)
			}
			o.Addrs, o.Username, o.Password, o.DB = []string{po.Addr}, po.Username, po.Password, po.DB
		}
		if a := cfg.String("addrs", ""); a != "" {
			o.Addrs = strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ';' || r == ' ' })
		}
		o.MasterName = cfg.String("master-name", "")
		o.Username = cfg.String("username", o.Username)
		o.Password = cfg.String("password", o.Password)
		var err error
		if o.DB, err = cfg.Int("db", o.DB); err != nil {
			return nil, err
		}
		if o.Timeout, err = cfg.Duration("timeout", 5*time.Second); err != nil {
			return nil, err
		}
		return New(ctx, o)
	})
}

// DefaultPrefix is the key prefix when Options.Prefix is empty.
const DefaultPrefix = "osprey:registry"

// Options configure a Store.
type Options struct {
	// Addrs are the servers (one standalone, the Cluster's seeds, or the Sentinels).
	Addrs []string
	// MasterName is the Sentinel master name; empty without Sentinel.
	MasterName         string
	Username, Password string
	DB                 int
	// Prefix prefixes every key (DefaultPrefix when empty).
	Prefix string
	// Timeout bounds each command; 0 is 5 s.
	Timeout time.Duration
}

// Store is a registry.SharedStore in Redis. It is safe for concurrent use, by any number of
// processes sharing the keys.
type Store struct {
	client  goredis.UniversalClient
	keys    keys
	timeout time.Duration

	ps      *goredis.PubSub
	changes chan registry.Key
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

var _ registry.SharedStore = (*Store)(nil)

type keys struct {
	versions, modrefs, seq, changes, objPrefix, modPrefix string
}

func (k keys) obj(field string) string { return k.objPrefix + field }

// New connects to Redis (it pings it, within ctx) and subscribes to the change channel.
// Close it.
func New(ctx context.Context, o Options) (*Store, error) {
	if len(o.Addrs) == 0 {
		return nil, errors.New("registry store redis: addrs is required")
	}
	prefix := "{" + cmp.Or(o.Prefix, DefaultPrefix) + "}:"
	timeout := cmp.Or(o.Timeout, 5*time.Second)
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: o.Addrs, MasterName: o.MasterName,
		Username: o.Username, Password: o.Password, DB: o.DB, ReadTimeout: timeout, WriteTimeout: timeout})
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("registry store redis: ping %s: %w", strings.Join(o.Addrs, ";"), err)
	}
	s := &Store{client: client, timeout: timeout, changes: make(chan registry.Key, 256), closed: make(chan struct{}),
		keys: keys{versions: prefix + "versions", modrefs: prefix + "modrefs", seq: prefix + "seq",
			changes: prefix + "changes", objPrefix: prefix + "obj:", modPrefix: prefix + "mod:"}}
	s.ps = client.Subscribe(ctx, s.keys.changes)
	if _, err := s.ps.Receive(pctx); err != nil { // the subscription's confirmation
		s.ps.Close()
		client.Close()
		return nil, fmt.Errorf("registry store redis: subscribe: %w", err)
	}
	s.wg.Add(1)
	go s.relay()
	return s, nil
}

// relay turns the channel's messages into keys on s.changes, dropping them when nobody
// reads (they are hints), until Close.
func (s *Store) relay() {
	defer s.wg.Done()
	defer close(s.changes)
	msgs := s.ps.Channel()
	for {
		select {
		case <-s.closed:
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			key, ok := parseField(m.Payload)
			if !ok {
				continue
			}
			select {
			case s.changes <- key:
			default:
			}
		}
	}
}

// Close ends the subscription (closing Changes' channel) and the client.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = errors.Join(s.ps.Close(), s.client.Close())
		s.wg.Wait()
	})
	return err
}

// Changes implements registry.SharedStore.
func (s *Store) Changes() <-chan registry.Key { return s.changes }

func field(kind, fqn string) string { return kind + "/" + fqn }

func parseField(f string) (registry.Key, bool) {
	kind, fqn, ok := strings.Cut(f, "/")
	return registry.Key{Kind: kind, FQN: fqn}, ok && checkObject(kind, fqn) == nil
}

func checkObject(kind, fqn string) error {
	if !slices.Contains(registry.Kinds(), kind) {
		return fmt.Errorf("registry store redis: kind %q (want %s)", kind, strings.Join(registry.Kinds(), ", "))
	}
	if got, err := engine.ParseFQN(fqn, ""); err != nil || got != fqn {
		return fmt.Errorf("registry store redis: %q is not a lower-case namespace.name", fqn)
	}
	return nil
}

// saveScript stores an object on condition of its version (ARGV[2]; "*" is any) and
// returns {1, new version}, or {0, current version}. Module references are counted, and a
// module no object names any more is deleted.
var saveScript = goredis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if ARGV[2] ~= '*' and cur ~= ARGV[2] then return {0, cur} end
local old = redis.call('HGET', KEYS[2], 'modules') or ''
local i = 7
for h in string.gmatch(ARGV[4], '%S+') do
  redis.call('SET', ARGV[5] .. h, ARGV[i])
  redis.call('HINCRBY', KEYS[3], h, 1)
  i = i + 1
end
for h in string.gmatch(old, '%S+') do
  if redis.call('HINCRBY', KEYS[3], h, -1) <= 0 then
    redis.call('HDEL', KEYS[3], h)
    redis.call('DEL', ARGV[5] .. h)
  end
end
local v = tostring(redis.call('INCR', KEYS[4]))
redis.call('HSET', KEYS[2], 'manifest', ARGV[3], 'modules', ARGV[4], 'version', v)
redis.call('HSET', KEYS[1], ARGV[1], v)
redis.call('PUBLISH', ARGV[6], ARGV[1])
return {1, v}
`)

// deleteScript deletes an object on condition of its version (ARGV[2]; "*" is any): {1,
// ""} or {0, current version}.
var deleteScript = goredis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if ARGV[2] ~= '*' and cur ~= ARGV[2] then return {0, cur} end
if cur == '' then return {1, ''} end
local old = redis.call('HGET', KEYS[2], 'modules') or ''
for h in string.gmatch(old, '%S+') do
  if redis.call('HINCRBY', KEYS[3], h, -1) <= 0 then
    redis.call('HDEL', KEYS[3], h)
    redis.call('DEL', ARGV[3] .. h)
  end
end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return {1, ''}
`)

// loadScript reads an object and its modules at one moment: {manifest, version, hex1,
// bytes1 or 0 when missing, …}, or nil when it is not stored.
var loadScript = goredis.NewScript(`
local o = redis.call('HMGET', KEYS[1], 'manifest', 'modules', 'version')
if not o[1] then return false end
local out = {o[1], o[3] or ''}
for h in string.gmatch(o[2] or '', '%S+') do
  out[#out+1] = h
  out[#out+1] = redis.call('GET', ARGV[1] .. h) or 0
end
return out
`)

func (s *Store) cmdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Save implements registry.Store: it replaces the object whatever its version.
func (s *Store) Save(ctx context.Context, kind, fqn string, manifest []byte, modules map[string][]byte) error {
	_, err := s.save(ctx, kind, fqn, manifest, modules, "*")
	return err
}

// SaveVersion implements registry.SharedStore.
func (s *Store) SaveVersion(ctx context.Context, kind, fqn string, manifest []byte, modules map[string][]byte, expect string) (string, error) {
	if expect == "*" {
		return "", fmt.Errorf("registry store redis: save %s %s: %q is not a version", kind, fqn, expect)
	}
	return s.save(ctx, kind, fqn, manifest, modules, expect)
}

func (s *Store) save(ctx context.Context, kind, fqn string, manifest []byte, modules map[string][]byte, expect string) (string, error) {
	if err := checkObject(kind, fqn); err != nil {
		return "", err
	}
	refs := slices.Sorted(maps.Keys(modules))
	hexes := make([]string, len(refs))
	for i, ref := range refs {
		h, err := moduleref.Hex(ref)
		if err != nil {
			return "", fmt.Errorf("registry store redis: save %s %s: %w", kind, fqn, err)
		}
		if got := moduleref.Of(modules[ref]); got != ref {
			return "", fmt.Errorf("registry store redis: save %s %s: module %s: the bytes have digest %s", kind, fqn, ref, got)
		}
		hexes[i] = h
	}
	f := field(kind, fqn)
	args := []any{f, expect, manifest, strings.Join(hexes, " "), s.keys.modPrefix, s.keys.changes}
	for _, ref := range refs {
		args = append(args, modules[ref])
	}
	cctx, cancel := s.cmdCtx(ctx)
	defer cancel()
	res, err := saveScript.Run(cctx, s.client, []string{s.keys.versions, s.keys.obj(f), s.keys.modrefs, s.keys.seq}, args...).Slice()
	if err != nil {
		return "", fmt.Errorf("registry store redis: save %s %s: %w", kind, fqn, err)
	}
	return casResult("save", kind, fqn, expect, res)
}

// casResult reads a script's {ok, version} answer.
func casResult(op, kind, fqn, expect string, res []any) (string, error) {
	if len(res) != 2 {
		return "", fmt.Errorf("registry store redis: %s %s %s: unexpected reply %v", op, kind, fqn, res)
	}
	v, _ := res[1].(string)
	if ok, _ := res[0].(int64); ok != 1 {
		return "", fmt.Errorf("registry store redis: %s %s %s: stored version %q, expected %q: %w", op, kind, fqn, v, expect, registry.ErrConflict)
	}
	return v, nil
}

// Delete implements registry.Store: it deletes the object whatever its version.
func (s *Store) Delete(ctx context.Context, kind, fqn string) error {
	return s.delete(ctx, kind, fqn, "*")
}

// DeleteVersion implements registry.SharedStore.
func (s *Store) DeleteVersion(ctx context.Context, kind, fqn, expect string) error {
	if expect == "*" {
		return fmt.Errorf("registry store redis: delete %s %s: %q is not a version", kind, fqn, expect)
	}
	return s.delete(ctx, kind, fqn, expect)
}

func (s *Store) delete(ctx context.Context, kind, fqn, expect string) error {
	if err := checkObject(kind, fqn); err != nil {
		return err
	}
	f := field(kind, fqn)
	cctx, cancel := s.cmdCtx(ctx)
	defer cancel()
	res, err := deleteScript.Run(cctx, s.client, []string{s.keys.versions, s.keys.obj(f), s.keys.modrefs},
		f, expect, s.keys.modPrefix, s.keys.changes).Slice()
	if err != nil {
		return fmt.Errorf("registry store redis: delete %s %s: %w", kind, fqn, err)
	}
	_, err = casResult("delete", kind, fqn, expect, res)
	return err
}

// Versions implements registry.SharedStore.
func (s *Store) Versions(ctx context.Context) (map[registry.Key]string, error) {
	cctx, cancel := s.cmdCtx(ctx)
	defer cancel()
	all, err := s.client.HGetAll(cctx, s.keys.versions).Result()
	if err != nil {
		return nil, fmt.Errorf("registry store redis: versions: %w", err)
	}
	out := make(map[registry.Key]string, len(all))
	for f, v := range all {
		if k, ok := parseField(f); ok {
			out[k] = v
		}
	}
	return out, nil
}

// Load implements registry.Store. Each object is read at one moment (loadScript); the set
// of objects is the one listed first, less those deleted meanwhile.
func (s *Store) Load(ctx context.Context) ([]registry.StoredObject, error) {
	vs, err := s.Versions(ctx)
	if err != nil {
		return nil, err
	}
	ks := slices.SortedFunc(maps.Keys(vs), func(a, b registry.Key) int {
		return cmp.Or(cmp.Compare(rank(a.Kind), rank(b.Kind)), strings.Compare(a.FQN, b.FQN))
	})
	var out []registry.StoredObject
	for _, k := range ks {
		o, ok, err := s.LoadObject(ctx, k.Kind, k.FQN)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, o)
		}
	}
	return out, nil
}

func rank(kind string) int { return slices.Index(registry.Kinds(), kind) }

// LoadObject implements registry.SharedStore. A module missing or corrupt is reported in
// the object's Err.
func (s *Store) LoadObject(ctx context.Context, kind, fqn string) (registry.StoredObject, bool, error) {
	if err := checkObject(kind, fqn); err != nil {
		return registry.StoredObject{}, false, err
	}
	cctx, cancel := s.cmdCtx(ctx)
	defer cancel()
	res, err := loadScript.Run(cctx, s.client, []string{s.keys.obj(field(kind, fqn))}, s.keys.modPrefix).Slice()
	if errors.Is(err, goredis.Nil) {
		return registry.StoredObject{}, false, nil
	}
	if err != nil {
		return registry.StoredObject{}, false, fmt.Errorf("registry store redis: load %s %s: %w", kind, fqn, err)
	}
	obj := registry.StoredObject{Kind: kind, FQN: fqn, Modules: map[string][]byte{}}
	if len(res) < 2 || len(res)%2 != 0 {
		obj.Err = fmt.Errorf("registry store redis: load %s %s: unexpected reply", kind, fqn)
		return obj, true, nil
	}
	m, _ := res[0].(string)
	obj.Manifest = []byte(m)
	obj.Version, _ = res[1].(string)
	for i := 2; i < len(res); i += 2 {
		h, _ := res[i].(string)
		ref := moduleref.Prefix + h
		b, ok := res[i+1].(string)
		switch {
		case !ok:
			obj.Err = fmt.Errorf("registry store redis: load %s %s: module %s is missing", kind, fqn, ref)
		case moduleref.Of([]byte(b)) != ref:
			obj.Err = fmt.Errorf("registry store redis: load %s %s: module %s is corrupt (its bytes have digest %s)", kind, fqn, ref, moduleref.Of([]byte(b)))
		}
		if obj.Err != nil {
			return obj, true, nil
		}
		obj.Modules[ref] = []byte(b)
	}
	return obj, true, nil
}
