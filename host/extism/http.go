package extism

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gobwas/glob"
)

// maxRedirects is how many redirects one http_request follows (http.Client's default).
const maxRedirects = 10

// maxResponseHeaderBytes bounds the headers of one HTTP response a plugin receives.
const maxResponseHeaderBytes = 64 << 10

// hostMatcher is a plugin's allowed hosts, compiled once at load: a URL's host name must
// equal one of them or match one as a glob pattern (github.com/gobwas/glob, no separators),
// as go-sdk v1.7.1 matches them.
type hostMatcher struct {
	exact map[string]bool
	globs []glob.Glob
	names []string // as declared, for errors
}

func newHostMatcher(hosts []string) (hostMatcher, error) {
	m := hostMatcher{exact: map[string]bool{}, names: hosts}
	for _, h := range hosts {
		m.exact[h] = true
		if !strings.ContainsAny(h, "*?[]{}!\\") {
			continue
		}
		g, err := glob.Compile(h)
		if err != nil {
			return hostMatcher{}, fmt.Errorf("%q: not a valid pattern: %v", h, err)
		}
		m.globs = append(m.globs, g)
	}
	return m, nil
}

// allows reports whether a plugin may reach u: http or https, to an allowed host.
func (m *hostMatcher) allows(u *url.URL) bool {
	if u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	h := u.Hostname()
	if h == "" {
		return false
	}
	if m.exact[h] {
		return true
	}
	for _, g := range m.globs {
		if g.Match(h) {
			return true
		}
	}
	return false
}

// denied is the error of a request or redirect to a URL the plugin may not reach.
func (m *hostMatcher) denied(what string, u *url.URL) *hostError {
	allowed := "it declares no hosts"
	if len(m.names) > 0 {
		allowed = "it may reach only " + strings.Join(m.names, ", ")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		allowed = "only http and https URLs are"
	}
	return &hostError{kind: ErrDenied, msg: fmt.Sprintf("%s to %q is not allowed (%s)", what, clip(u.String()), allowed)}
}

// newHTTPClient returns the client of a plugin's http_request: one that checks every
// redirect's target against the plugin's hosts before following it (http.DefaultClient, the
// SDK's, follows redirects to any host), with a transport of its own (closed with the
// plugin) whose response headers are bounded.
func newHTTPClient(m *hostMatcher) (*http.Client, *http.Transport) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxResponseHeaderBytes = maxResponseHeaderBytes
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			if !m.allows(req.URL) {
				return m.denied("HTTP redirect from "+clip(via[len(via)-1].URL.String()), req.URL)
			}
			return nil
		},
	}, tr
}

// httpRequestJSON is http_request's request: {"url", "method", "headers"} (the SDK's
// HttpRequest, whose fields encoding/json matches case-insensitively).
type httpRequestJSON struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
}

// httpRequest is http_request: the request described by the JSON block at reqOff, with the
// block at bodyOff (0: none) as its body, both freed; it returns the response body's block
// (0 when empty) and records the status and headers for http_status_code and http_headers.
// A request or redirect to a host the plugin may not reach traps the call with ErrDenied,
// a body over MaxHTTPResponseBytes with ErrLimit; the request is bounded by the call's
// context and deadline.
func (in *instance) httpRequest(reqOff, bodyOff uint64) uint64 {
	p := in.p
	in.status = 0
	clear(in.headers)
	var r httpRequestJSON
	err := json.Unmarshal(in.block(reqOff), &r)
	in.kmust(kFree, reqOff, 0)
	if err != nil {
		panic(fmt.Errorf("http_request: invalid request: %v", err))
	}
	if r.Method == "" {
		r.Method = http.MethodGet
	}
	r.Method = strings.ToUpper(r.Method)
	u, err := url.Parse(r.URL)
	if err != nil {
		panic(fmt.Errorf("http_request: invalid URL: %v", err))
	}
	if !p.hosts.allows(u) {
		panic(p.hosts.denied("HTTP request", u))
	}
	var body io.Reader
	if bodyOff != 0 {
		body = bytes.NewReader(bytes.Clone(in.block(bodyOff)))
		in.kmust(kFree, bodyOff, 0)
	}
	ctx, cancel := context.WithDeadline(in.ctx, in.deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), body)
	if err != nil {
		panic(fmt.Errorf("http_request: %v", err))
	}
	if !p.hosts.allows(req.URL) { // the URL sent, as parsed again
		panic(p.hosts.denied("HTTP request", req.URL))
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		panic(httpError(ctx, r.URL, err))
	}
	defer resp.Body.Close()
	if in.headers == nil {
		in.headers = map[string]string{}
	}
	for k, v := range resp.Header {
		in.headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	in.status = int32(resp.StatusCode)
	max := p.limits.MaxHTTPResponseBytes
	tooLarge := func() *hostError {
		return &hostError{kind: ErrLimit, msg: fmt.Sprintf("HTTP response from %q: its body is larger than the %d bytes allowed (spec.limits.httpResponseBytes)", clip(r.URL), max)}
	}
	if resp.ContentLength > max {
		panic(tooLarge())
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, max+1)); err != nil {
		panic(httpError(ctx, r.URL, err))
	}
	if int64(buf.Len()) > max {
		panic(tooLarge())
	}
	return in.write(buf.Bytes())
}

// httpError is the failure of a request: a refused redirect's own, a timeout's, or a trap.
func httpError(ctx context.Context, u string, err error) error {
	var he *hostError
	switch {
	case errors.As(err, &he):
		return he
	case ctx.Err() != nil:
		return &hostError{kind: ErrTimeout, msg: fmt.Sprintf("HTTP request to %q: %v", clip(u), ctx.Err())}
	case strings.Contains(err.Error(), "server response headers exceeded"):
		// net/http's error for a response past Transport.MaxResponseHeaderBytes.
		return &hostError{kind: ErrLimit, msg: fmt.Sprintf("HTTP response from %q: its headers are larger than the %d bytes allowed", clip(u), maxResponseHeaderBytes)}
	}
	return fmt.Errorf("HTTP request to %q: %v", clip(u), err)
}

// httpHeaders is http_headers: the last response's headers as a JSON object (lower-case
// names, values joined with commas) in a new block, or 0 before any response.
func (in *instance) httpHeaders() uint64 {
	if in.status == 0 {
		return 0
	}
	b, err := json.Marshal(in.headers)
	if err != nil {
		panic(err)
	}
	return in.write(b)
}
