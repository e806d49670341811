package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/osprey-ml/osprey/gen/osprey/v1/ospreyv1connect"
)

// Scope is what a bearer token allows. It is a plain value, safe to share.
type Scope uint8

// Token scopes. ScopeWrite implies ScopeRead.
const (
	// ScopeRead allows reads: Get, GetMany, FeatureDescriptor, Watch and ListFeatures.
	ScopeRead Scope = iota + 1
	// ScopeWrite allows everything: reads, writes (Set, Append, Incr, Update), Ingest and
	// the registry (ApplyFeature, DeleteFeature, DryRun).
	ScopeWrite
)

// String returns "read" or "write".
func (s Scope) String() string {
	switch s {
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	}
	return fmt.Sprintf("scope(%d)", uint8(s))
}

// ParseScope parses "read" or "write" (case-insensitive).
func ParseScope(s string) (Scope, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "read":
		return ScopeRead, nil
	case "write":
		return ScopeWrite, nil
	}
	return 0, fmt.Errorf("unknown token scope %q (want read or write)", s)
}

// allows reports whether a token of scope s may make a call needing need.
func (s Scope) allows(need Scope) bool { return s >= need }

// procedureScopes is the scope each procedure needs. A procedure of the three services
// missing here needs ScopeWrite (fail closed). gRPC health and reflection need no token:
// load balancers probe health, and reflection describes the public API.
var procedureScopes = map[string]Scope{
	ospreyv1connect.EngineServiceGetProcedure:               ScopeRead,
	ospreyv1connect.EngineServiceGetManyProcedure:           ScopeRead,
	ospreyv1connect.EngineServiceFeatureDescriptorProcedure: ScopeRead,
	ospreyv1connect.EngineServiceWatchProcedure:             ScopeRead,
	ospreyv1connect.RegistryServiceListFeaturesProcedure:    ScopeRead,
	ospreyv1connect.EngineServiceSetProcedure:               ScopeWrite,
	ospreyv1connect.EngineServiceAppendProcedure:            ScopeWrite,
	ospreyv1connect.EngineServiceIncrProcedure:              ScopeWrite,
	ospreyv1connect.EngineServiceUpdateProcedure:            ScopeWrite,
	ospreyv1connect.IngestServiceIngestProcedure:            ScopeWrite,
	ospreyv1connect.RegistryServiceApplyFeatureProcedure:    ScopeWrite,
	ospreyv1connect.RegistryServiceDeleteFeatureProcedure:   ScopeWrite,
	ospreyv1connect.RegistryServiceDryRunProcedure:          ScopeWrite,
	ospreyv1connect.RegistryServiceCallPluginProcedure:      ScopeWrite,
}

// authenticator checks bearer tokens. Tokens are kept as SHA-256 digests and looked up by
// the digest of the presented token, so that the lookup's timing says nothing about the
// tokens. It is immutable and safe for concurrent use.
type authenticator struct {
	tokens map[[sha256.Size]byte]Scope
}

func newAuthenticator(tokens map[string]Scope) (*authenticator, error) {
	if len(tokens) == 0 {
		return nil, nil
	}
	a := &authenticator{tokens: make(map[[sha256.Size]byte]Scope, len(tokens))}
	for tok, scope := range tokens {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			return nil, errors.New("tokens: a token is empty or contains white space")
		}
		if scope != ScopeRead && scope != ScopeWrite {
			return nil, fmt.Errorf("tokens: %s is not a scope (want ScopeRead or ScopeWrite)", scope)
		}
		a.tokens[sha256.Sum256([]byte(tok))] = scope
	}
	return a, nil
}

// gate is a connect.RequestGateFunc: it runs once the request headers are in, before the
// request message is read or decoded, so that an unauthenticated caller cannot make the
// server decode a large message. It covers unary and streaming calls of every protocol.
func (a *authenticator) gate(ctx context.Context, spec connect.Spec, _ connect.Peer, header http.Header) (context.Context, error) {
	need, ok := procedureScopes[spec.Procedure]
	if !ok {
		need = ScopeWrite
	}
	tok, ok := bearerToken(header)
	if !ok {
		return ctx, unauthenticated("missing bearer token (send the header Authorization: Bearer <token>)")
	}
	scope, ok := a.tokens[sha256.Sum256([]byte(tok))]
	if !ok {
		return ctx, unauthenticated("unknown bearer token")
	}
	if !scope.allows(need) {
		return ctx, connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("%s needs a token with %s scope; this token has %s scope", spec.Procedure, need, scope))
	}
	return ctx, nil
}

func unauthenticated(msg string) error {
	err := connect.NewError(connect.CodeUnauthenticated, errors.New(msg))
	err.Meta().Set("WWW-Authenticate", `Bearer realm="osprey"`)
	return err
}

// bearerToken returns the token of an "Authorization: Bearer <token>" header.
func bearerToken(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
