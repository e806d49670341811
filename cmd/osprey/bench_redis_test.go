package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
	"github.com/osprey-ml/osprey/internal/redistest"
)

// TestServeRedisBaseline runs the child of `bench --baseline-process --baseline-redis`
// (serveBaseline with a Redis): it stores the constants it reads in the Redis and answers
// each Get with a GET of them — a change made in Redis is what the next call answers — and
// it stops, removing its keys, when its standard input closes.
func TestServeRedisBaseline(t *testing.T) {
	srv := redistest.Standalone(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveBaseline(ctx, srv.Addr(), inR, outW) }()
	var frames []byte
	for _, m := range []proto.Message{&ospreyv1.GetResponse{Fqn: "bench.scalar", Found: true}, &ospreyv1.GetManyResponse{}} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(binary.BigEndian.AppendUint32(frames, uint32(len(b))), b...)
	}
	if _, err := inW.Write(frames); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	c := ospreyv1connect.NewEngineServiceClient(http.DefaultClient, strings.TrimSpace(line))
	fqn := func() string {
		t.Helper()
		res, err := c.Get(ctx, connect.NewRequest(&ospreyv1.GetRequest{Selector: "bench.scalar"}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetFqn()
	}
	if got := fqn(); got != "bench.scalar" {
		t.Fatalf("Get: fqn %q, want the constant's", got)
	}
	changed, _ := proto.Marshal(&ospreyv1.GetResponse{Fqn: "changed.in.redis"})
	if err := rdb.Set(ctx, benchRedisGetKey, changed, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := fqn(); got != "changed.in.redis" {
		t.Fatalf("Get after a SET in Redis: fqn %q, want the stored one (the baseline must GET per call)", got)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(ctx, benchRedisGetKey, benchRedisManyKey).Result(); err != nil || n != 0 {
		t.Errorf("after stopping: %d baseline keys left (%v)", n, err)
	}
}
