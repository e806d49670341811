package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRecoverHTTP: a panic outside the RPC handlers is logged and answered 500.
func TestRecoverHTTP(t *testing.T) {
	var logs strings.Builder
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	h := s.recoverHTTP(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("routing bug") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "routing bug") {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	if !strings.Contains(logs.String(), "routing bug") || !strings.Contains(logs.String(), "stack=") {
		t.Fatalf("not logged: %s", logs.String())
	}
	// http.ErrAbortHandler is passed on: net/http uses it to abort a response quietly.
	defer func() {
		if p := recover(); p != http.ErrAbortHandler {
			t.Fatalf("recovered %v", p)
		}
	}()
	s.recoverHTTP(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })).
		ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
}
