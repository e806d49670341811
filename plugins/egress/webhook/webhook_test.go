package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/osprey-ml/osprey/engine"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/plugins/egress"
	"github.com/osprey-ml/osprey/plugins/egress/webhook"
)

func newWebhook(t *testing.T, cfg map[string]any) egress.Egress {
	t.Helper()
	eg, err := egress.New(context.Background(), &manifest.Egress{FQN: "fraud.alerts", Type: "webhook", Config: cfg}, egress.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eg.Close() })
	return eg
}

var ts = time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC)

func message() engine.EgressMessage {
	return engine.EgressMessage{
		ID: "fraud.card_spend{card_id=c1}/0000000042", Egress: "fraud.alerts", Attempt: 2, Timestamp: ts,
		From: engine.Address{FQN: "fraud.card_spend", Keys: engine.Keys{"card_id": "c1"}},
		Row:  engine.Row{"amount": engine.Float(12.5), "count": engine.Int(3), "card_id": engine.String("c1"), "at": engine.Timestamp(ts), "tags": engine.StringList([]string{"a"}), "none": engine.Null},
	}
}

func TestSuccess(t *testing.T) {
	var mu sync.Mutex
	var got *http.Request
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, body = r, b
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	eg := newWebhook(t, map[string]any{"url": srv.URL + "/hook?x=1", "headers": map[string]string{"Authorization": "Bearer t", "X-Team": "risk"}, "timeout": "2s"})
	if err := eg.Emit(context.Background(), message()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Method != http.MethodPost || got.URL.Path != "/hook" || got.URL.RawQuery != "x=1" {
		t.Errorf("request %s %s", got.Method, got.URL)
	}
	for k, want := range map[string]string{
		"Content-Type": "application/json", "Idempotency-Key": "fraud.card_spend{card_id=c1}/0000000042",
		"Authorization": "Bearer t", "X-Team": "risk", "User-Agent": "osprey-egress",
	} {
		if v := got.Header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	var decoded map[string]any
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := map[string]any{
		"id": "fraud.card_spend{card_id=c1}/0000000042", "egress": "fraud.alerts", "attempt": 2.0,
		"timestamp": "2026-01-02T15:04:05.123456789Z",
		"from":      map[string]any{"fqn": "fraud.card_spend", "keys": map[string]any{"card_id": "c1"}},
		"row": map[string]any{"amount": 12.5, "count": 3.0, "card_id": "c1", "at": "2026-01-02T15:04:05.123456789Z",
			"tags": []any{"a"}, "none": nil},
	}
	if !reflect.DeepEqual(decoded, want) {
		t.Errorf("body\n got %v\nwant %v", decoded, want)
	}
}

// TestIdempotencyKeyEscaped: an ID a header cannot hold (an entity key with a newline) is
// sent percent-encoded, and the message delivered.
func TestIdempotencyKeyEscaped(t *testing.T) {
	keys := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { keys <- r.Header.Get("Idempotency-Key") }))
	defer srv.Close()
	m := message()
	m.ID = "fraud.card_spend{card_id=a\nb}/7"
	if err := newWebhook(t, map[string]any{"url": srv.URL}).Emit(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if k := <-keys; k != "fraud.card_spend%7Bcard_id=a%0Ab%7D%2F7" {
		t.Errorf("Idempotency-Key %q", k)
	}
}

// TestBodyShape pins the JSON of a message with no keys and no row: objects, not null.
func TestBodyShape(t *testing.T) {
	b, err := webhook.Body("ns.e", engine.EgressMessage{ID: "x/1", From: engine.Address{FQN: "ns.f"}, Timestamp: ts, Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"x/1","egress":"ns.e","from":{"fqn":"ns.f","keys":{}},"timestamp":"2026-01-02T15:04:05.123456789Z","attempt":1,"row":{}}`
	if string(b) != want {
		t.Errorf("Body = %s\nwant %s", b, want)
	}
}

func TestStatuses(t *testing.T) {
	tests := []struct {
		status    int
		permanent bool
	}{
		{500, false}, {503, false}, {599, false}, {408, false}, {429, false},
		{400, true}, {401, true}, {404, true}, {409, true}, {422, true},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, "no\x1b[31m\nway")
			}))
			defer srv.Close()
			err := newWebhook(t, map[string]any{"url": srv.URL}).Emit(context.Background(), message())
			if err == nil {
				t.Fatal("Emit succeeded")
			}
			if got := errors.Is(err, engine.ErrPermanent); got != tt.permanent {
				t.Errorf("permanent = %v, want %v: %v", got, tt.permanent, err)
			}
			var se *webhook.StatusError
			if !errors.As(err, &se) || se.StatusCode != tt.status || se.Body != "no?[31m way" || se.Retryable() == tt.permanent {
				t.Errorf("StatusError = %+v (%v)", se, err)
			}
			if !strings.Contains(err.Error(), "egress fraud.alerts: POST "+srv.URL+": answered ") {
				t.Errorf("error %q does not name the egress and the URL", err)
			}
		})
	}
}

// blocked is a server whose handler waits until the request is abandoned (or the test
// ends), counting requests.
func blocked(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() {
		close(stop)
		srv.Close()
	})
	return srv, &n
}

func TestDeadline(t *testing.T) {
	srv, n := blocked(t)
	t.Run("the context's", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := newWebhook(t, map[string]any{"url": srv.URL}).Emit(ctx, message())
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, engine.ErrPermanent) {
			t.Errorf("Emit = %v, want a retryable deadline", err)
		}
	})
	t.Run("the configured timeout", func(t *testing.T) {
		err := newWebhook(t, map[string]any{"url": srv.URL, "timeout": "50ms"}).Emit(context.Background(), message())
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, engine.ErrPermanent) {
			t.Errorf("Emit = %v, want a retryable deadline", err)
		}
	})
	if n.Load() != 2 {
		t.Errorf("the server saw %d requests, want 2", n.Load())
	}
}

// endless answers status with a body of up to 1 GiB, recording how much of it it wrote
// before the client went away.
func endless(t *testing.T, status int, written *atomic.Int64) *httptest.Server {
	chunk := []byte(strings.Repeat("x", 64<<10))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		for i := 0; i < (1<<30)/len(chunk); i++ {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	return srv
}

func TestHugeBodyIsBounded(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusOK} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var written atomic.Int64
			srv := endless(t, status, &written)
			err := newWebhook(t, map[string]any{"url": srv.URL}).Emit(context.Background(), message())
			srv.Close() // waits for the handler, which stops once the client closed
			if status == http.StatusOK {
				if err != nil {
					t.Fatalf("Emit = %v", err)
				}
			} else {
				var se *webhook.StatusError
				if !errors.As(err, &se) || !errors.Is(err, engine.ErrPermanent) {
					t.Fatalf("Emit = %v", err)
				}
				if len(se.Body) > webhook.MaxErrorBody+len(" …(truncated)") || !strings.HasSuffix(se.Body, "…(truncated)") {
					t.Errorf("error body of %d bytes: %.80q…", len(se.Body), se.Body)
				}
			}
			if w := written.Load(); w >= 1<<30 {
				t.Errorf("the server wrote its whole %d-byte body: the client read it all", w)
			}
		})
	}
}

func TestHugeHeadersAreRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 64; i++ {
			w.Header().Add("X-Big", strings.Repeat("h", 4<<10))
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	err := newWebhook(t, map[string]any{"url": srv.URL}).Emit(context.Background(), message())
	if err == nil || errors.Is(err, engine.ErrPermanent) || !strings.Contains(err.Error(), "header") {
		t.Errorf("Emit = %v, want a retryable error about the headers", err)
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	target, hits := blocked(t)
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/internal", status)
		}))
		err := newWebhook(t, map[string]any{"url": srv.URL}).Emit(context.Background(), message())
		srv.Close()
		var se *webhook.StatusError
		if !errors.Is(err, engine.ErrPermanent) || !errors.As(err, &se) || se.StatusCode != status || se.Location != target.URL+"/internal" {
			t.Errorf("%d: Emit = %v (%+v)", status, err, se)
		}
		if !strings.Contains(err.Error(), "redirects are not followed") {
			t.Errorf("%d: error %q does not say why", status, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	err := newWebhook(t, map[string]any{"url": url}).Emit(context.Background(), message())
	if err == nil || errors.Is(err, engine.ErrPermanent) || !strings.Contains(err.Error(), "egress fraud.alerts: POST "+url+": ") {
		t.Errorf("Emit = %v, want a retryable error naming the URL", err)
	}
}

func TestPasswordIsRedacted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "s3cret" {
			t.Errorf("basic auth %q %q %v", u, p, ok)
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1)
	err := newWebhook(t, map[string]any{"url": url}).Emit(context.Background(), message())
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "user:xxxxx@") {
		t.Errorf("Emit = %v", err)
	}
	_, err = egress.New(context.Background(), &manifest.Egress{FQN: "ns.e", Type: "webhook", Config: map[string]any{"url": "ftp://user:s3cret@x.example.com"}}, egress.Policy{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("config error = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		cfg    map[string]any
		policy egress.Policy
		want   string
	}{
		{"no url", map[string]any{"timeout": "1s"}, egress.Policy{}, "spec.config.url: missing"},
		{"unknown key", map[string]any{"url": "https://x.example.com", "urll": "y"}, egress.Policy{}, "spec.config.urll: unknown key (did you mean url?) (known: url, headers, timeout)"},
		{"not http", map[string]any{"url": "file:///etc/passwd"}, egress.Policy{}, "spec.config.url: file:///etc/passwd: want an http or https URL"},
		{"relative", map[string]any{"url": "/hook"}, egress.Policy{}, "spec.config.url: /hook: want an http or https URL"},
		{"no host", map[string]any{"url": "https:///hook"}, egress.Policy{}, "spec.config.url: https:///hook has no host"},
		{"bad port", map[string]any{"url": "https://x.example.com:99999/"}, egress.Policy{}, `port "99999" is not 1 to 65535`},
		{"does not parse", map[string]any{"url": "https://x.example.com/%zz"}, egress.Policy{}, "spec.config.url: does not parse as a URL"},
		{"fragment", map[string]any{"url": "https://x.example.com/#a"}, egress.Policy{}, "has a #fragment"},
		{"url a list", map[string]any{"url": []string{"https://x.example.com"}}, egress.Policy{}, "spec.config.url: a list: want a single value"},
		{"headers a string", map[string]any{"url": "https://x.example.com", "headers": "A: b"}, egress.Policy{}, "spec.config.headers: a string: want a mapping"},
		{"header value with a newline", map[string]any{"url": "https://x.example.com", "headers": map[string]string{"X-A": "b\r\nX-Evil: 1"}}, egress.Policy{},
			"spec.config.headers.X-A: the value has a control character at offset 1"},
		{"header name not a token", map[string]any{"url": "https://x.example.com", "headers": map[string]string{"X A": "b"}}, egress.Policy{},
			`spec.config.headers["X A"]: the header name has ' ' at offset 1`},
		{"reserved header", map[string]any{"url": "https://x.example.com", "headers": map[string]string{"content-type": "text/plain"}}, egress.Policy{},
			"spec.config.headers.content-type: Content-Type is set by the webhook itself"},
		{"idempotency key", map[string]any{"url": "https://x.example.com", "headers": map[string]string{"Idempotency-Key": "x"}}, egress.Policy{},
			"Idempotency-Key is set by the webhook itself"},
		{"zero timeout", map[string]any{"url": "https://x.example.com", "timeout": "0s"}, egress.Policy{}, "spec.config.timeout: \"0s\": must be a positive duration"},
		{"bad timeout", map[string]any{"url": "https://x.example.com", "timeout": "5"}, egress.Policy{}, "spec.config.timeout: \"5\" is not a duration"},
		{"host not allowed", map[string]any{"url": "http://169.254.169.254/latest"}, egress.Policy{AllowedHosts: []string{"*.example.com"}},
			`spec.config.url: host "169.254.169.254" is not allowed by this server's egress policy (it allows *.example.com`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := egress.New(context.Background(), &manifest.Egress{FQN: "fraud.alerts", Type: "webhook", Config: tt.cfg}, tt.policy)
			if !errors.Is(err, plugins.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want ErrInvalidConfig and %q", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "egress fraud.alerts (webhook): ") {
				t.Errorf("error %q does not name the egress", err)
			}
		})
	}
	allowed := egress.Policy{AllowedHosts: []string{"*.example.com"}}
	if _, err := egress.New(context.Background(), &manifest.Egress{FQN: "ns.e", Type: "webhook", Config: map[string]any{"url": "https://hooks.example.com/x"}}, allowed); err != nil {
		t.Errorf("an allowed host: %v", err)
	}
}

// TestForbiddenAddresses: a webhook never connects to a link-local address — where clouds
// serve instance metadata and credentials — nor to an unspecified or multicast one, named
// by IP or by a host name that resolves to one, whatever the policy; the failure is
// permanent (not retried).
func TestForbiddenAddresses(t *testing.T) {
	for _, u := range []string{
		"http://169.254.169.254/latest/meta-data/",
		"http://[fe80::1]:8080/",
		"http://0.0.0.0:9/",
		"http://224.0.0.1/",
	} {
		eg := newWebhook(t, map[string]any{"url": u, "timeout": "2s"})
		err := eg.Emit(context.Background(), engine.EgressMessage{ID: "m1", Egress: "fraud.alerts", Row: engine.Row{}})
		if !errors.Is(err, egress.ErrForbiddenAddress) || !errors.Is(err, engine.ErrPermanent) {
			t.Errorf("POST %s: %v, want ErrForbiddenAddress and ErrPermanent", u, err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "10.0.0.1", "192.168.1.1", "::1"} {
		if egress.Forbidden(net.ParseIP(ip)) {
			t.Errorf("%s is forbidden; only link-local, multicast and unspecified addresses are", ip)
		}
	}
}
