package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/server"
)

// TestRestoreTimeoutConfig: --restore-timeout follows the flag > environment > config file >
// default order of every serve flag.
func TestRestoreTimeoutConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "osprey.yaml")
	if err := os.WriteFile(file, []byte("restore-timeout: 7s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  string
		file bool
		want time.Duration
	}{
		{name: "default", want: server.DefaultRestoreTimeout},
		{name: "file", file: true, want: 7 * time.Second},
		{name: "env over file", env: "5s", file: true, want: 5 * time.Second},
		{name: "flag over env", args: []string{"--restore-timeout", "3s"}, env: "5s", file: true, want: 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("OSPREY_RESTORE_TIMEOUT", tc.env)
			}
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			var c serveConfig
			cfgFile := c.register(fs, "")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if tc.file {
				*cfgFile = file
			}
			if err := c.resolve(fs, *cfgFile); err != nil {
				t.Fatal(err)
			}
			if c.RestoreTimeout != tc.want {
				t.Fatalf("RestoreTimeout = %v, want %v", c.RestoreTimeout, tc.want)
			}
		})
	}
}

func TestNewEncoders(t *testing.T) {
	for _, tc := range []struct {
		cfg, want string // want: an error, or "" for none
	}{
		{"", ""},
		{"hash.key=0123456789abcdef-key,hash.bytes=16", ""},
		{"hash=x", "is not name.key=value"},
		{"rot13.key=x", "rot13"},
		{"hash.bytes=99", "outside 8 to 32"},
	} {
		r, err := newEncoders(tc.cfg)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Fatalf("newEncoders(%q) = %v; want %q", tc.cfg, err, tc.want)
		}
		if err == nil {
			if _, err := r.Encoder("hash"); err != nil {
				t.Fatalf("newEncoders(%q): no hash encoding: %v", tc.cfg, err)
			}
		}
	}
}

// TestNewRegistryStore: dir by default with a data directory, none without one, and a named
// store with its config.
func TestNewRegistryStore(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	for _, tc := range []struct {
		c       serveConfig
		none    bool
		wantErr bool
	}{
		{c: serveConfig{}, none: true},
		{c: serveConfig{DataDir: data}},
		{c: serveConfig{Registry: "dir", RegistryConfig: "dir=" + filepath.Join(data, "elsewhere")}},
		{c: serveConfig{Registry: "dir"}, wantErr: true},
		{c: serveConfig{Registry: "nope", DataDir: data}, wantErr: true},
		{c: serveConfig{RegistryConfig: "dir=x"}, wantErr: true},
	} {
		st, err := newRegistryStore(ctx, &tc.c)
		switch {
		case tc.wantErr && err == nil:
			t.Errorf("%+v: no error", tc.c)
		case !tc.wantErr && err != nil:
			t.Errorf("%+v: %v", tc.c, err)
		case !tc.wantErr && (st == nil) != tc.none:
			t.Errorf("%+v: store %v", tc.c, st)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "registry", "objects")); err != nil {
		t.Errorf("the default dir store is not in <data-dir>/registry: %v", err)
	}
}
