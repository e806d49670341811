package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestStartDebug(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	url, err := startDebug(ctx, log, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("%s: %d %.200s", url, res.StatusCode, body)
	}
	for _, addr := range []string{"0.0.0.0:6060", "10.0.0.1:6060", "example.com:6060", "nope"} {
		if _, err := startDebug(ctx, log, addr); err == nil {
			t.Errorf("startDebug(%q) accepted a non-loopback address", addr)
		}
	}
}
