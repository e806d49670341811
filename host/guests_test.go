package host_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Go guests are built once per test binary with the standard toolchain, as a guest author
// would: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
var (
	guestMu    sync.Mutex
	guestBuilt = map[string][]byte{}
	guestDir   string
)

// buildGuest builds the Go package at pkg (a path relative to the repository root) and
// returns the module's bytes.
func buildGuest(t testing.TB, pkg string) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a Go guest; skipped with -short")
	}
	guestMu.Lock()
	defer guestMu.Unlock()
	if b, ok := guestBuilt[pkg]; ok {
		return b
	}
	if guestDir == "" {
		dir, err := os.MkdirTemp("", "osprey-guests-")
		if err != nil {
			t.Fatal(err)
		}
		guestDir = dir // removed by TestMain
	}
	out := filepath.Join(guestDir, filepath.Base(pkg)+".wasm")
	goTool := "go"
	cmd := exec.Command(goTool, "build", "-buildmode=c-shared", "-o", out, "./"+pkg)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guest %s: %v\n%s", pkg, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	guestBuilt[pkg] = b
	return b
}

func TestMain(m *testing.M) {
	code := m.Run()
	if guestDir != "" {
		os.RemoveAll(guestDir)
	}
	os.Exit(code)
}
