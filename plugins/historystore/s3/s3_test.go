package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/historian/storagetest"
	"github.com/osprey-ml/osprey/internal/miniotest"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/historystore/s3"
)

// options are the Options of a Storage of bucket on srv with its root credentials.
func options(srv *miniotest.Server, bucket string) s3.Options {
	return s3.Options{Endpoint: srv.Endpoint(), Bucket: bucket, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Lookup: minio.BucketLookupPath}
}

func newStorage(t *testing.T, o s3.Options) *s3.Storage {
	t.Helper()
	s, err := s3.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the history stores' shared suite (historian/storagetest), which the
// file store passes too: one server, a bucket per case.
func TestConformance(t *testing.T) {
	srv := miniotest.Start(t)
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) historian.Storage {
		return newStorage(t, options(srv, srv.Bucket(t, fmt.Sprintf("conformance-%d", n.Add(1)))))
	})
}

// TestConformancePrefixed: the suite again, with the keys under a prefix, and the bucket
// created by the store.
func TestConformancePrefixed(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite a second time; skipped with -short")
	}
	srv := miniotest.Start(t)
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) historian.Storage {
		o := options(srv, fmt.Sprintf("prefixed-%d", n.Add(1)))
		o.Prefix, o.CreateBucket = "osprey/history", true
		return newStorage(t, o)
	})
}

// TestPrefix: keys live under the prefix, List returns them relative to it and sees nothing
// outside it, nor directory markers.
func TestPrefix(t *testing.T) {
	ctx := context.Background()
	srv := miniotest.Start(t)
	bucket := srv.Bucket(t, "prefix")
	raw := srv.Client(t)
	for _, k := range []string{"outside", "osprey/historyx/y", "osprey/history/dir/"} {
		if _, err := raw.PutObject(ctx, bucket, k, strings.NewReader(""), 0, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, prefix := range []string{"osprey/history", "/osprey/history/"} {
		t.Run(prefix, func(t *testing.T) {
			o := options(srv, bucket)
			o.Prefix = prefix
			s := newStorage(t, o)
			defer s.Close()
			if s.Prefix() != "osprey/history/" {
				t.Fatalf("Prefix = %q", s.Prefix())
			}
			if err := s.Put(ctx, "fqn=a.b/k.parquet", []byte("x")); err != nil {
				t.Fatal(err)
			}
			if _, err := raw.StatObject(ctx, bucket, "osprey/history/fqn=a.b/k.parquet", minio.StatObjectOptions{}); err != nil {
				t.Fatalf("the object is not under the prefix: %v", err)
			}
			got, err := s.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Key != "fqn=a.b/k.parquet" {
				t.Fatalf("List = %+v, want the one key, relative to the prefix", got)
			}
			if _, err := s.Open(ctx, "../outside"); err == nil {
				t.Fatal("Open(../outside) succeeded")
			}
		})
	}
	o := options(srv, bucket)
	o.Prefix = "a//b"
	if _, err := s3.New(ctx, o); err == nil || !strings.Contains(err.Error(), `"a//b"`) {
		t.Errorf("New with prefix a//b: %v", err)
	}
}

// TestBucket: a missing bucket is an error naming it, unless the store may create it.
func TestBucket(t *testing.T) {
	ctx := context.Background()
	srv := miniotest.Start(t)
	o := options(srv, "created")
	_, err := s3.New(ctx, o)
	if err == nil || !strings.Contains(err.Error(), `"created" does not exist`) || !strings.Contains(err.Error(), "create_bucket") {
		t.Fatalf("New of a missing bucket: %v", err)
	}
	o.CreateBucket = true
	s := newStorage(t, o)
	if err := s.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// Creating an existing bucket is no error, and keeps its objects.
	s2 := newStorage(t, o)
	if got, err := s2.List(ctx, ""); err != nil || len(got) != 1 {
		t.Fatalf("List = %+v, %v", got, err)
	}
	o.Bucket = "Not_A_Bucket"
	if _, err := s3.New(ctx, o); err == nil || !strings.Contains(err.Error(), `"Not_A_Bucket"`) {
		t.Errorf("New with an invalid bucket name: %v", err)
	}
}

// TestCredentials: refused credentials give an error saying so and naming the bucket;
// without static credentials the AWS and MinIO environment variables are used.
func TestCredentials(t *testing.T) {
	ctx := context.Background()
	srv := miniotest.Start(t)
	bucket := srv.Bucket(t, "creds")
	for _, tt := range []struct{ name, access, secret string }{
		{"wrong secret", srv.AccessKey, "not-the-secret"},
		{"unknown access key", "nobody", "not-the-secret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := options(srv, bucket)
			o.AccessKey, o.SecretKey = tt.access, tt.secret
			_, err := s3.New(ctx, o)
			if err == nil || !strings.Contains(err.Error(), "access denied") || !strings.Contains(err.Error(), `"creds"`) ||
				!strings.Contains(err.Error(), "access_key") {
				t.Fatalf("New = %v, want access denied naming the bucket and what to check", err)
			}
		})
	}

	// None of the developer's own credentials.
	noCreds := func(t *testing.T) {
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY",
			"AWS_SESSION_TOKEN", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"} {
			t.Setenv(k, "")
		}
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	}
	envs := []struct {
		name string
		env  map[string]string
	}{
		{"aws", map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey}},
		{"minio", map[string]string{"MINIO_ROOT_USER": srv.AccessKey, "MINIO_ROOT_PASSWORD": srv.SecretKey}},
		{"aws first", map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey,
			"MINIO_ROOT_USER": "nobody", "MINIO_ROOT_PASSWORD": "wrong-password"}},
	}
	for _, tt := range envs {
		t.Run("env "+tt.name, func(t *testing.T) {
			noCreds(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			o := options(srv, bucket)
			o.AccessKey, o.SecretKey = "", ""
			s := newStorage(t, o)
			defer s.Close()
			if err := s.Put(ctx, "env/"+tt.name, []byte("x")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOutage: while the server is down every call fails within its context, naming the
// object; once it is back the same Storage works again.
func TestOutage(t *testing.T) {
	ctx := context.Background()
	srv := miniotest.Start(t)
	s := newStorage(t, options(srv, srv.Bucket(t, "outage")))
	defer s.Close()
	if err := s.Put(ctx, "k/before", []byte("x")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"put", func(ctx context.Context) error { return s.Put(ctx, "k/during", []byte("y")) }},
		{"list", func(ctx context.Context) error { _, err := s.List(ctx, "k/"); return err }},
		{"open", func(ctx context.Context) error {
			obj, err := s.Open(ctx, "k/before")
			if err == nil {
				obj.Close()
			}
			return err
		}},
	}
	for _, c := range calls {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := c.call(cctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "s3://outage/k/") {
			t.Errorf("%s while the server is down: %v, want an error naming the object", c.name, err)
		}
		if errors.Is(err, historian.ErrNotFound) {
			t.Errorf("%s while the server is down: %v is not ErrNotFound", c.name, err)
		}
	}
	srv.Start()
	if err := s.Put(ctx, "k/after", []byte("z")); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if got, err := s.List(ctx, "k/"); err != nil || len(got) != 2 {
		t.Fatalf("after the outage: List = %+v, %v", got, err)
	}
}

// TestReplacedWhileOpen: an Object reads the version it opened; once that is replaced, its
// reads fail with ErrReplaced, naming the object.
func TestReplacedWhileOpen(t *testing.T) {
	ctx := context.Background()
	srv := miniotest.Start(t)
	s := newStorage(t, options(srv, srv.Bucket(t, "replaced")))
	defer s.Close()
	old := bytes.Repeat([]byte{'o'}, 1000)
	if err := s.Put(ctx, "k", old); err != nil {
		t.Fatal(err)
	}
	obj, err := s.Open(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if err := s.Put(ctx, "k", bytes.Repeat([]byte{'n'}, 1000)); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 100)
	n, err := obj.ReadAt(p, 500)
	if !errors.Is(err, s3.ErrReplaced) || !strings.Contains(err.Error(), "s3://replaced/k") {
		t.Fatalf("ReadAt = %d, %v (%q); want ErrReplaced naming the object", n, err, p[:n])
	}
	again, err := s.Open(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.ReadAt(p, 500); err != nil || p[0] != 'n' {
		t.Fatalf("reopened: %q, %v", p[:1], err)
	}
}

// TestRegistered: the store registers as "s3" and reads its config keys.
func TestRegistered(t *testing.T) {
	ctx := context.Background()
	srv := miniotest.Start(t)
	bucket := srv.Bucket(t, "registered")
	base := plugins.Config{"endpoint": srv.URL(), "bucket": bucket, "access_key": srv.AccessKey, "secret_key": srv.SecretKey}
	with := func(kv ...string) plugins.Config {
		c := plugins.Config{}
		for k, v := range base {
			c[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(c, kv[i])
			} else {
				c[kv[i]] = kv[i+1]
			}
		}
		return c
	}
	good := []plugins.Config{
		base,
		with("endpoint", srv.Endpoint(), "secure", "false", "path_style", "true", "prefix", "p/q", "region", "us-east-1"),
		with("bucket", "registered-new", "create_bucket", "true", "path_style", "true"),
	}
	for _, cfg := range good {
		s, err := plugins.NewHistoryStore(ctx, "s3", cfg)
		if err != nil {
			t.Fatalf("%v: %v", cfg, err)
		}
		if err := s.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatalf("%v: Put: %v", cfg, err)
		}
		s.Close()
	}
	bad := []struct {
		name string
		cfg  plugins.Config
		want string
	}{
		{"unknown key", with("bogus", "1"), `unknown key "bogus"`},
		{"no bucket", with("bucket", ""), `"bucket" is required`},
		{"access key alone", with("secret_key", ""), `"access_key" and "secret_key" go together`},
		{"session token alone", with("access_key", "", "secret_key", "", "session_token", "t"), `"session_token" needs`},
		{"bad bool", with("create_bucket", "maybe"), `"create_bucket"`},
		{"insecure https", with("endpoint", "https://"+srv.Endpoint(), "secure", "false"), `"secure" is false`},
		{"insecure default endpoint", with("endpoint", "", "secure", "false"), "s3.amazonaws.com"},
		{"secure http", with("secure", "true"), "plain http"},
		{"scheme", with("endpoint", "ftp://"+srv.Endpoint()), `scheme "ftp"`},
		{"path", with("endpoint", srv.URL()+"/bucket"), "not http(s)://host[:port]"},
		{"host with a path", with("endpoint", srv.Endpoint()+"/x"), "neither host[:port]"},
		{"missing bucket", with("bucket", "no-such-bucket"), `"no-such-bucket" does not exist`},
		// Virtual-host style puts the bucket in the host name, which 127.0.0.1 cannot have.
		{"virtual host", with("path_style", "false"), "registered.127.0.0.1"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := plugins.NewHistoryStore(ctx, "s3", tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
	if !slices.Contains(plugins.HistoryStoreNames(), "s3") {
		t.Errorf("names %v", plugins.HistoryStoreNames())
	}
}
