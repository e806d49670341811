// Package console serves Osprey's web console: a single-page app, built from console/web
// (TypeScript over the Connect API with connect-es) into console/dist and embedded in the
// binary, so that the console needs nothing but the osprey binary. `osprey serve` and
// `osprey dev` serve it at /, on the API's port:
//
//	server.Config{..., Handlers: map[string]http.Handler{"/": console.Handler()}}
//
// The app calls the API from the browser: same-origin by default, or another server's
// (the page's API field; that server's --cors-origins must allow the page's origin), with
// the bearer token typed into its Token field. The handler itself needs no token: the
// assets are public, the API behind them is not.
//
// Handler serves dist/index.html at / and the bundle under /assets/ (content-hashed names,
// cached as immutable; index.html is revalidated on every load), gzip-compressed for
// clients that accept it. Any other path is answered with index.html only for a GET or
// HEAD that is a browser navigation (it accepts text/html) to a page-like path; everything
// else gets 404, so that a mistyped API path never comes back as HTML. The API's own routes
// (/osprey.v1.…/Method, health, reflection) are matched before "/" by the server's mux.
//
// The bundle is rebuilt by `go tool task console` (npm ci in console/web, the TypeScript
// generated from proto/ with buf and protoc-gen-es, esbuild) and committed;
// `go tool task console:check` fails when the committed files differ from a fresh build.
// See docs/console.md.
package console

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed dist
var dist embed.FS

// contentSecurityPolicy is the policy of index.html: the app's own scripts and styles only,
// and calls to any API origin (the API field may name another server).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src *; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	gz          []byte // body gzip-compressed, or nil when that does not make it smaller
	contentType string
	etag        string // strong ETag of body
	immutable   bool   // under /assets/: the name changes with the content
}

var (
	loadOnce sync.Once
	assets   map[string]*asset // by URL path: "/index.html", "/assets/main-….js"
	loadErr  error
)

// load reads and compresses the embedded files, once.
func load() {
	assets = map[string]*asset{}
	loadErr = fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		urlPath := strings.TrimPrefix(p, "dist")
		sum := sha256.Sum256(body)
		a := &asset{
			body:        body,
			contentType: contentType(urlPath),
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
			immutable:   strings.HasPrefix(urlPath, "/assets/"),
		}
		if compressible(a.contentType) {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			zw.Write(body)
			zw.Close()
			if buf.Len() < len(body) {
				a.gz = buf.Bytes()
			}
		}
		assets[urlPath] = a
		return nil
	})
	if loadErr == nil && assets["/index.html"] == nil {
		loadErr = fs.ErrNotExist
	}
}

// contentType is the Content-Type of a file by its extension; the standard library's table
// (mime.TypeByExtension) may read the system's, which differ between machines.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".json", ".map":
		return "application/json"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	case ".wasm":
		return "application/wasm"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

func compressible(ct string) bool {
	return strings.HasPrefix(ct, "text/") || ct == "application/json" || ct == "image/svg+xml"
}

// Handler returns the handler of the console: mount it at "/" (see the package
// documentation). It is safe for concurrent use; every call returns an equivalent handler
// over the same embedded files.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	loadOnce.Do(load)
	if loadErr != nil {
		http.Error(w, "console: the embedded assets are missing (build them: go tool task console)", http.StatusInternalServerError)
		return
	}
	p := r.URL.Path
	if p == "/" {
		p = "/index.html"
	}
	a := assets[p]
	if a == nil && isNavigation(r) {
		a = assets["/index.html"]
	}
	if a == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if a.immutable {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		// index.html names the current bundle: revalidate it (cheaply, by ETag) every time.
		h.Set("Cache-Control", "no-cache")
	}
	if strings.HasPrefix(a.contentType, "text/html") {
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
	}
	body, etag := a.body, a.etag
	if a.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			h.Set("Content-Encoding", "gzip")
			body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gzip"`
		}
	}
	h.Set("ETag", etag)
	// ServeContent answers conditional (If-None-Match: 304) and range requests.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// isNavigation tells whether a request for an unknown path is a browser loading a page of
// the app (a deep link such as /features), which gets index.html: a GET or HEAD accepting
// HTML, for a path that names no file (no extension) and no API service (whose first segment,
// osprey.v1.EngineService or grpc.health.v1.Health, has dots).
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		return false
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".") && path.Ext(p) == "" && !strings.HasPrefix(p, "assets/")
}

// acceptsGzip tells whether the client accepts gzip (Accept-Encoding: gzip, without q=0).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") || strings.TrimSpace(coding) == "*" {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
