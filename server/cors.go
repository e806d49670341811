package server

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"
)

// corsMaxAge is how long, in seconds, browsers may cache a preflight response.
const corsMaxAge = 2 * 60 * 60

// withCORS lets browsers at origins call the API with the Connect and gRPC-Web protocols:
// it answers preflight requests and adds the Access-Control-* headers to responses,
// allowing the headers those protocols send (and Authorization, for bearer tokens) and
// exposing those they return. With no origins, next is returned as is: browsers then refuse
// cross-origin calls, and same-origin ones work. "*" allows any origin. The returned
// handler is safe for concurrent use.
func withCORS(origins []string, next http.Handler) (http.Handler, error) {
	if len(origins) == 0 {
		return next, nil
	}
	for _, o := range origins {
		if err := checkOrigin(o); err != nil {
			return nil, err
		}
	}
	c := cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization", "Connect-Accept-Encoding", "Connect-Content-Encoding", "Grpc-Accept-Encoding"),
		ExposedHeaders: append(connectcors.ExposedHeaders(), "Connect-Accept-Encoding", "Connect-Content-Encoding", "Grpc-Accept-Encoding", "Grpc-Encoding", "WWW-Authenticate"),
		MaxAge:         corsMaxAge,
	})
	return c.Handler(next), nil
}

// checkOrigin accepts "*" and origins of the form scheme://host[:port], optionally with
// one wildcard in the host (https://*.example.com), as rs/cors matches them.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(strings.Replace(o, "*", "wildcard", 1))
	if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("cors origin %q: want scheme://host[:port] (e.g. https://app.example.com) or *", o)
	}
	return nil
}
