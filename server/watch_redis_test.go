package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/structpb"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/internal/redistest"
	redisnotifier "github.com/osprey-ml/osprey/plugins/notifier/redis"
	"github.com/osprey-ml/osprey/server"
)

// TestWatchThroughRedisNotifier: Watch streams a change that went through the Redis
// Streams notifier, and the server deletes its watch group from Redis when it stops.
func TestWatchThroughRedisNotifier(t *testing.T) {
	s := redistest.Standalone(t)
	client := goredis.NewClient(&goredis.Options{Addr: s.Addr()})
	t.Cleanup(func() { client.Close() })
	n, err := redisnotifier.New(context.Background(), client, redisnotifier.WithBlock(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	e := start(t, envOptions{cfg: server.Config{Notifier: n}})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := e.clients(protocols[3])
	stream, err := c.engine.Watch(ctx, connect.NewRequest(&ospreyv1.WatchRequest{Fqn: "fraud.country", Entities: []*ospreyv1.Entity{{Keys: keys("r1")}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	waitFor(t, func() bool { return e.srv.Watchers("fraud.country") == 1 })
	if _, err := c.engine.Set(ctx, connect.NewRequest(&ospreyv1.SetRequest{Fqn: "fraud.country", Keys: keys("r1"), Value: structpb.NewStringValue("PT")})); err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	if m := stream.Msg(); m.GetKeys()["card_id"] != "r1" || m.GetValue().GetStringValue() != "PT" {
		t.Fatalf("Watch = %v", m)
	}
	stream.Close()

	watchGroups := func() []string {
		b, err := n.Backlog(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, g := range b {
			if strings.HasPrefix(g.Group, "watch-") {
				out = append(out, g.Group)
			}
		}
		return out
	}
	if g := watchGroups(); len(g) != 1 {
		t.Fatalf("watch groups in Redis while serving: %v, want one", g)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if g := watchGroups(); len(g) != 0 {
		t.Fatalf("watch groups in Redis after the server stopped: %v", g)
	}
}
