package redis_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/osprey-ml/osprey/internal/redistest"
	"github.com/osprey-ml/osprey/plugins"
	redisstore "github.com/osprey-ml/osprey/plugins/registrystore/redis"
	"github.com/osprey-ml/osprey/registry"
	"github.com/osprey-ml/osprey/registry/storetest"
)

// harness runs the conformance suite on one redis-server, each Store under its own prefix.
func harness(t *testing.T, addrs []string) storetest.Harness {
	client := goredis.NewUniversalClient(&goredis.UniversalOptions{Addrs: addrs})
	t.Cleanup(func() { client.Close() })
	prefixes := map[registry.Store]string{}
	var mu sync.Mutex
	prefixOf := func(s registry.Store) string {
		mu.Lock()
		defer mu.Unlock()
		return prefixes[s]
	}
	return storetest.Harness{
		New: func(t *testing.T) registry.Store {
			prefix := "t:" + strings.ReplaceAll(t.Name(), "/", ":")
			s, err := redisstore.New(context.Background(), redisstore.Options{Addrs: addrs, Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			mu.Lock()
			prefixes[s] = prefix
			mu.Unlock()
			return s
		},
		Modules: func(t *testing.T, s registry.Store) int {
			keys, err := scanAll(client, "{"+prefixOf(s)+"}:mod:*")
			if err != nil {
				t.Fatal(err)
			}
			return len(keys)
		},
		Corrupt: func(t *testing.T, s registry.Store, ref string) {
			key := "{" + prefixOf(s) + "}:mod:" + strings.TrimPrefix(ref, "sha256:")
			if err := client.Set(context.Background(), key, "tampered", 0).Err(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// scanAll lists the keys matching pattern (on every master of a Cluster).
func scanAll(client goredis.UniversalClient, pattern string) ([]string, error) {
	ctx := context.Background()
	var out []string
	var mu sync.Mutex
	scan := func(ctx context.Context, c *goredis.Client) error {
		keys, err := c.Keys(ctx, pattern).Result()
		mu.Lock()
		out = append(out, keys...)
		mu.Unlock()
		return err
	}
	switch c := client.(type) {
	case *goredis.ClusterClient:
		return out, c.ForEachMaster(ctx, scan)
	case *goredis.Client:
		return out, scan(ctx, c)
	}
	return nil, errors.New("unexpected client")
}

func TestStoreStandalone(t *testing.T) {
	srv := redistest.Standalone(t)
	storetest.Run(t, harness(t, []string{srv.Addr()}))
}

func TestStoreCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-master Cluster")
	}
	c := redistest.NewCluster(t, 3)
	storetest.Run(t, harness(t, c.Addrs()))
}

// TestRegistered: the store registers as "redis" and reads its config keys.
func TestRegistered(t *testing.T) {
	srv := redistest.Standalone(t)
	ctx := context.Background()
	s, err := plugins.NewRegistryStore(ctx, "redis", plugins.Config{"addrs": srv.Addr(), "prefix": "reg"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.(*redisstore.Store).Close()
	if err := s.Save(ctx, "Feature", "ns.f", []byte("kind: Feature\n"), nil); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.CLI("hget", "{reg}:obj:Feature/ns.f", "manifest"); err != nil || !strings.Contains(out, "kind: Feature") {
		t.Errorf("stored manifest: %q, %v", out, err)
	}
	byURL, err := plugins.NewRegistryStore(ctx, "redis", plugins.Config{"url": "redis://" + srv.Addr() + "/0", "prefix": "reg"})
	if err != nil {
		t.Fatal(err)
	}
	defer byURL.(*redisstore.Store).Close()
	if objs, err := byURL.Load(ctx); err != nil || len(objs) != 1 {
		t.Errorf("the store configured by url loads %d objects, %v", len(objs), err)
	}
	tests := map[string]plugins.Config{
		"unknown key": {"addrs": srv.Addr(), "bogus": "1"},
		"bad url":     {"url": "http://x"},
		"no addrs":    nil,
		"bad db":      {"addrs": srv.Addr(), "db": "x"},
	}
	for name, cfg := range tests {
		if _, err := plugins.NewRegistryStore(ctx, "redis", cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if !slices.Contains(plugins.RegistryStoreNames(), "redis") {
		t.Errorf("names %v", plugins.RegistryStoreNames())
	}
}

// TestUnavailable: a Store whose server stopped fails its calls (within its timeout), and
// works again once the server is back.
func TestUnavailable(t *testing.T) {
	srv := redistest.Standalone(t)
	ctx := context.Background()
	s, err := redisstore.New(ctx, redisstore.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv.Stop()
	if err := s.Save(ctx, "Feature", "ns.f", []byte("x"), nil); err == nil {
		t.Fatal("Save with the server stopped succeeded")
	}
	if _, err := s.Load(ctx); err == nil {
		t.Fatal("Load with the server stopped succeeded")
	}
	srv.Start()
	if err := s.Save(ctx, "Feature", "ns.f", []byte("x"), nil); err != nil {
		t.Fatalf("Save after the server returned: %v", err)
	}
}
