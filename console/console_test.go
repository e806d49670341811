package console_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/osprey-ml/osprey/console"
)

// bundle returns the paths of the built JavaScript and CSS, as index.html names them.
func bundle(t *testing.T) (js, css string) {
	t.Helper()
	html, err := os.ReadFile(filepath.Join("dist", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`src="(/assets/[^"]+\.js)"`).FindSubmatch(html)
	c := regexp.MustCompile(`href="(/assets/[^"]+\.css)"`).FindSubmatch(html)
	if m == nil || c == nil {
		t.Fatalf("dist/index.html names no /assets/*.js or *.css:\n%s", html)
	}
	return string(m[1]), string(c[1])
}

func do(t *testing.T, method, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	console.Handler().ServeHTTP(rec, req)
	return rec
}

func TestIndex(t *testing.T) {
	js, css := bundle(t)
	rec := do(t, "GET", "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /: %d", rec.Code)
	}
	h := rec.Header()
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-cache",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("GET /: %s = %q, want %q", k, got, want)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src *") {
		t.Errorf("GET /: Content-Security-Policy = %q", csp)
	}
	body := rec.Body.String()
	if !strings.Contains(body, js) || !strings.Contains(body, css) {
		t.Errorf("GET /: the page does not name %s and %s:\n%s", js, css, body)
	}
	if h.Get("ETag") == "" {
		t.Fatal("GET /: no ETag")
	}
	// Revalidation by ETag.
	if rec := do(t, "GET", "/", "If-None-Match", h.Get("ETag")); rec.Code != http.StatusNotModified {
		t.Errorf("GET / If-None-Match: %d, want 304", rec.Code)
	}
	// index.html by its name too, and HEAD.
	if rec := do(t, "GET", "/index.html"); rec.Code != http.StatusOK || rec.Body.String() != body {
		t.Errorf("GET /index.html: %d", rec.Code)
	}
	if rec := do(t, "HEAD", "/"); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
		t.Errorf("HEAD /: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

func TestAssets(t *testing.T) {
	js, css := bundle(t)
	for path, ct := range map[string]string{js: "text/javascript; charset=utf-8", css: "text/css; charset=utf-8"} {
		want, err := fs.ReadFile(os.DirFS("dist"), strings.TrimPrefix(path, "/"))
		if err != nil {
			t.Fatal(err)
		}
		rec := do(t, "GET", path)
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), want) {
			t.Fatalf("GET %s: %d, %d bytes (want %d)", path, rec.Code, rec.Body.Len(), len(want))
		}
		h := rec.Header()
		if h.Get("Content-Type") != ct {
			t.Errorf("GET %s: Content-Type %q, want %q", path, h.Get("Content-Type"), ct)
		}
		if cc := h.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: Cache-Control %q", path, cc)
		}
		if h.Get("Content-Security-Policy") != "" {
			t.Errorf("GET %s: a Content-Security-Policy on an asset", path)
		}

		// gzip for clients that take it, the same bytes once decompressed.
		rec = do(t, "GET", path, "Accept-Encoding", "br, gzip")
		if rec.Header().Get("Content-Encoding") != "gzip" || !strings.Contains(rec.Header().Get("Vary"), "Accept-Encoding") {
			t.Fatalf("GET %s (gzip): Content-Encoding %q, Vary %q", path, rec.Header().Get("Content-Encoding"), rec.Header().Get("Vary"))
		}
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("GET %s (gzip): %v, %d bytes decompressed (want %d)", path, err, len(got), len(want))
		}
		if rec.Header().Get("ETag") == do(t, "GET", path).Header().Get("ETag") {
			t.Errorf("GET %s: the gzip and identity responses share an ETag", path)
		}
		if rec := do(t, "GET", path, "Accept-Encoding", "gzip;q=0"); rec.Header().Get("Content-Encoding") != "" {
			t.Errorf("GET %s with gzip;q=0: Content-Encoding %q", path, rec.Header().Get("Content-Encoding"))
		}
	}
}

func TestLicenses(t *testing.T) {
	rec := do(t, "GET", "/licenses.txt")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/plain; charset=utf-8" || !strings.Contains(rec.Body.String(), "@bufbuild/protobuf") {
		t.Fatalf("GET /licenses.txt: %d, %q:\n%s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("GET /licenses.txt: Cache-Control %q, want no-cache", cc)
	}
}

func TestUnknownPaths(t *testing.T) {
	const html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, tc := range []struct {
		method, path, accept string
		code                 int
		page                 bool // answered with index.html
	}{
		{"GET", "/features", html, 200, true}, // a browser's deep link
		{"HEAD", "/live/now", html, 200, true},
		{"GET", "/features", "*/*", 404, false},                                   // not a navigation
		{"GET", "/features", "", 404, false},                                      // nor this
		{"POST", "/features", html, 404, false},                                   // not a page load
		{"GET", "/osprey.v1.EngineService/Nope", html, 404, false},                // an API path
		{"POST", "/osprey.v1.EngineService/Nope", "application/json", 404, false}, // an API call
		{"GET", "/grpc.health.v1.Health/Check", html, 404, false},
		{"GET", "/assets/missing-123.js", html, 404, false},
		{"GET", "/favicon.ico", html, 404, false},
		{"GET", "/read/fraud.amount", html, 404, false}, // a file name
		{"GET", "/assets/", html, 404, false},
		{"PUT", "/", html, 405, false}, // a file, but not a method it serves
	} {
		rec := do(t, tc.method, tc.path, "Accept", tc.accept)
		if rec.Code != tc.code {
			t.Errorf("%s %s (Accept %q): %d, want %d", tc.method, tc.path, tc.accept, rec.Code, tc.code)
			continue
		}
		isPage := strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html")
		if isPage != tc.page {
			t.Errorf("%s %s (Accept %q): Content-Type %q, want index.html: %v", tc.method, tc.path, tc.accept, rec.Header().Get("Content-Type"), tc.page)
		}
	}
}
