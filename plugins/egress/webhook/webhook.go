// Package webhook is the "webhook" egress: each message is one HTTP POST of a JSON body to
// a URL of the manifest's.
//
//	apiVersion: osprey.dev/v1alpha1
//	kind: Egress
//	metadata: {name: alerts, namespace: fraud}
//	spec:
//	  type: webhook
//	  config:
//	    url: https://hooks.example.com/fraud   # http or https; required
//	    headers: {Authorization: "Bearer …"}    # sent with every request
//	    timeout: 5s                             # one attempt; default 5s
//
// The body is
//
//	{"id": "<message ID>", "egress": "fraud.alerts",
//	 "from": {"fqn": "fraud.card_spend", "keys": {"card_id": "c1"}},
//	 "timestamp": "2026-01-02T15:04:05.123456789Z", "attempt": 1,
//	 "row": {"amount": 12.5, "card_id": "c1", …}}
//
// with Content-Type: application/json and an Idempotency-Key header holding the message ID
// (percent-encoded if it has control characters, which a header cannot hold), the same on
// every attempt, so that the receiver can drop a message it has seen (delivery is at least
// once). Row values are written as egress.JSON says (ints exact, timestamps RFC
// 3339, non-finite floats as strings).
//
// A 2xx answer delivers the message. 408, 429 and 5xx answers, network errors and the
// attempt's deadline are retried by the engine; any other answer — another 4xx, or a 3xx:
// redirects are not followed, since where the server may send messages is for the manifest
// (and the operator's --egress-allowed-hosts) to say, not for the receiver — is permanent
// (engine.ErrPermanent). At most 4 KiB of an answer's body is read into the error, and at
// most 64 KiB in all (to reuse the connection); response headers are capped at 64 KiB.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/egress"
)

func init() { egress.Register("webhook", New) }

// Limits and defaults.
const (
	// DefaultTimeout bounds one attempt when spec.config.timeout is not set. The engine's
	// egress timeout (engine.Delivery.EgressTimeout) bounds it too.
	DefaultTimeout = 5 * time.Second
	// MaxErrorBody is the most of an answer's body an error quotes.
	MaxErrorBody = 4 << 10
	// maxDrain is the most of an answer's body read in all, so that the connection can be
	// reused; a longer body's connection is closed instead.
	maxDrain = 64 << 10
	// maxResponseHeaderBytes bounds an answer's headers.
	maxResponseHeaderBytes = 64 << 10
	// maxLocation bounds the redirect target an error quotes.
	maxLocation = 256
)

// configKeys are the keys of spec.config.
var configKeys = []string{"url", "headers", "timeout"}

// reservedHeaders are set by the webhook; spec.config.headers may not set them.
var reservedHeaders = []string{"Content-Type", "Content-Length", "Idempotency-Key", "Host", "Transfer-Encoding", "Connection",
	"Te", "Trailer", "Upgrade", "Keep-Alive", "Proxy-Connection"}

// Webhook is the webhook egress. It is safe for concurrent use.
type Webhook struct {
	fqn     string
	url     string // as configured
	shown   string // url with its password redacted, for errors
	headers http.Header
	timeout time.Duration
	client  *http.Client
	tr      *http.Transport
}

// New is the "webhook" factory: it checks cfg (url, headers, timeout) and makes the
// egress's HTTP client. It contacts nothing.
func New(_ context.Context, cfg egress.Config) (egress.Egress, error) {
	if err := cfg.Check(configKeys...); err != nil {
		return nil, err
	}
	raw, err := cfg.String("url", "")
	if err != nil {
		return nil, err
	}
	u, err := checkURL(cfg, raw)
	if err != nil {
		return nil, err
	}
	hm, err := cfg.Map("headers")
	if err != nil {
		return nil, err
	}
	headers := http.Header{}
	for name, v := range hm {
		if err := checkHeader(name, v); err != nil {
			return nil, fmt.Errorf("%w: %s: %s", errInvalid, headerPath(name), err)
		}
		headers.Add(name, v)
	}
	timeout, err := cfg.Duration("timeout", DefaultTimeout)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            egress.Dialer(30 * time.Second).DialContext, // never to link-local (metadata) addresses
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           16,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		// No gzip: an answer is read for at most a few KiB, and a compressed one could
		// expand without bound.
		DisableCompression: true,
	}
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // the 3xx is the answer: see classify
		},
	}
	return &Webhook{fqn: cfg.FQN, url: u.String(), shown: u.Redacted(), headers: headers, timeout: timeout, client: client, tr: tr}, nil
}

// errInvalid is what config errors wrap, as Config's getters' do.
var errInvalid = plugins.ErrInvalidConfig

// checkURL parses spec.config.url: absolute, http or https, with a host the policy allows.
// Errors show the URL with its password redacted.
func checkURL(cfg egress.Config, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: %s: missing (the URL to POST messages to, e.g. https://hooks.example.com/osprey)", errInvalid, egress.Path("url"))
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the URL, password included: say what is wrong only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: %s: does not parse as a URL: %v", errInvalid, egress.Path("url"), err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%w: %s: %s: want an http or https URL", errInvalid, egress.Path("url"), u.Redacted())
	case u.Hostname() == "":
		return nil, fmt.Errorf("%w: %s: %s has no host", errInvalid, egress.Path("url"), u.Redacted())
	case u.Fragment != "":
		return nil, fmt.Errorf("%w: %s: %s has a #fragment, which is never sent", errInvalid, egress.Path("url"), u.Redacted())
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: %s: %s: port %q is not 1 to 65535", errInvalid, egress.Path("url"), u.Redacted(), p)
		}
	}
	if err := cfg.CheckHost("url", u.Hostname()); err != nil {
		return nil, err
	}
	return u, nil
}

func headerPath(name string) string {
	p := egress.Path("headers")
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return p + "[" + strconv.Quote(name) + "]"
		}
	}
	return p + "." + name
}

// checkHeader returns what is wrong with a header of spec.config.headers: a name that is
// not an HTTP token or that the webhook sets itself, a value with control characters
// (which could smuggle another header). The value is not quoted: it may be a secret.
func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("the header name has %q at offset %d (want an HTTP token: letters, digits and !#$%%&'*+-.^_`|~)", rune(name[i]), i)
		}
	}
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return fmt.Errorf("%s is set by the webhook itself", http.CanonicalHeaderKey(name))
		}
	}
	if !utf8.ValidString(value) {
		return errors.New("the value is not valid UTF-8")
	}
	for i, r := range value {
		if r < ' ' && r != '\t' || r == 0x7f {
			return fmt.Errorf("the value has a control character at offset %d", i)
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// body is the JSON a message is POSTed as.
type body struct {
	ID        string         `json:"id"`
	Egress    string         `json:"egress"`
	From      from           `json:"from"`
	Timestamp string         `json:"timestamp"`
	Attempt   int            `json:"attempt"`
	Row       map[string]any `json:"row"`
}

type from struct {
	FQN  string            `json:"fqn"`
	Keys map[string]string `json:"keys"`
}

// Body returns the JSON body Emit POSTs for m: egress is the egress's FQN.
func Body(egressFQN string, m engine.EgressMessage) ([]byte, error) {
	b := body{ID: m.ID, Egress: egressFQN, From: from{FQN: m.From.FQN, Keys: map[string]string{}},
		Timestamp: egress.Time(m.Timestamp), Attempt: m.Attempt, Row: make(map[string]any, len(m.Row))}
	for k, v := range m.From.Keys {
		b.From.Keys[k] = v
	}
	for k, v := range m.Row {
		b.Row[k] = egress.JSON(v)
	}
	return json.Marshal(b)
}

// StatusError is an answer other than 2xx. Emit's error wraps it (and engine.ErrPermanent
// when the status is permanent).
type StatusError struct {
	// StatusCode is the answer's status.
	StatusCode int
	// Body is the start of the answer's body (at most MaxErrorBody bytes, control
	// characters replaced), for people.
	Body string
	// Location is a redirect's target (truncated), when there is one.
	Location string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.StatusCode >= 300 && e.StatusCode < 400 {
		msg += " (a redirect"
		if e.Location != "" {
			msg += " to " + e.Location
		}
		msg += "; redirects are not followed: set spec.config.url to the final address)"
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Retryable reports whether another attempt may succeed: 408, 429 and 5xx.
func (e *StatusError) Retryable() bool {
	return e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// Emit POSTs m once, within the webhook's timeout and ctx's deadline, and classifies the
// outcome (see the package documentation).
func (w *Webhook) Emit(ctx context.Context, m engine.EgressMessage) error {
	payload, err := Body(w.fqn, m)
	if err != nil {
		return fmt.Errorf("%w: egress %s: encode message %s: %w", engine.ErrPermanent, w.fqn, m.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("%w: egress %s: POST %s: %w", engine.ErrPermanent, w.fqn, w.shown, err)
	}
	req.Header = w.headers.Clone()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", headerValue(m.ID))
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "osprey-egress")
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// Network errors and the deadline: retried. url.Error's message repeats the URL
		// (with its password redacted); say it once.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, egress.ErrForbiddenAddress) {
			return fmt.Errorf("%w: egress %s: POST %s: %w", engine.ErrPermanent, w.fqn, w.shown, err)
		}
		return fmt.Errorf("egress %s: POST %s: %w", w.fqn, w.shown, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		drain(resp.Body)
		return nil
	}
	se := &StatusError{StatusCode: resp.StatusCode, Body: readBody(resp.Body)}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		se.Location = truncate(printable(resp.Header.Get("Location")), maxLocation)
	}
	drain(resp.Body)
	if se.Retryable() {
		return fmt.Errorf("egress %s: POST %s: %w", w.fqn, w.shown, se)
	}
	return fmt.Errorf("%w: egress %s: POST %s: %w", engine.ErrPermanent, w.fqn, w.shown, se)
}

// headerValue returns s as a header value: as it is, or percent-encoded (url.PathEscape)
// when it holds control characters, which a header cannot (an entity key with a newline).
func headerValue(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return url.PathEscape(s)
		}
	}
	return s
}

// readBody reads the start of an answer's body for an error: at most MaxErrorBody bytes,
// made printable.
func readBody(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, MaxErrorBody+1))
	more := len(b) > MaxErrorBody
	if more {
		b = b[:MaxErrorBody]
	}
	s := strings.TrimSpace(printable(string(b)))
	if more {
		s += " …(truncated)"
	}
	return s
}

// drain reads what is left of a body, up to maxDrain, so that the connection can be reused
// (a longer body's connection is closed by Close).
func drain(r io.Reader) { _, _ = io.CopyN(io.Discard, r, maxDrain) }

// printable replaces invalid UTF-8 and control characters (but for spaces) with '?' or a
// space, so that an answer cannot forge log lines.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError:
			return '?'
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return '?'
		}
		return r
	}, s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Close closes the webhook's idle connections. Requests in flight finish. (An Emit after
// Close would open new ones; a Set never calls Emit after Close.)
func (w *Webhook) Close() error {
	w.tr.CloseIdleConnections()
	return nil
}
