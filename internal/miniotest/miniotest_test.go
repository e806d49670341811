package miniotest_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/osprey-ml/osprey/internal/miniotest"
)

// TestRestart: a bucket and its objects survive a Stop and a Start on the same port, and a
// stopped server does not answer.
func TestRestart(t *testing.T) {
	ctx := context.Background()
	s := miniotest.Start(t)
	bucket := s.Bucket(t, "restart")
	body := []byte("kept across restarts")
	if _, err := s.Client(t).PutObject(ctx, bucket, "k", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if resp, err := (&http.Client{Timeout: time.Second}).Get(s.URL() + "/minio/health/live"); err == nil {
		resp.Body.Close()
		t.Fatalf("a stopped server answers: %s", resp.Status)
	}
	s.Stop() // again: nothing
	s.Start()
	s.Start() // again: nothing
	obj, err := s.Client(t).GetObject(ctx, bucket, "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("after a restart: %q, %v", got, err)
	}
}

// TestBinary: OSPREY_MINIO wins, and naming a missing binary is an error naming it.
func TestBinary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-minio")
	t.Setenv("OSPREY_MINIO", missing)
	if _, err := miniotest.Binary(); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Binary with OSPREY_MINIO=%s: %v", missing, err)
	}
	fake := filepath.Join(t.TempDir(), "minio")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OSPREY_MINIO", fake)
	if got, err := miniotest.Binary(); err != nil || got != fake {
		t.Fatalf("Binary = %q, %v; want %q", got, err, fake)
	}
}
