package main

import (
	"testing"

	"github.com/osprey-ml/osprey/plugins"
)

func TestApplyRedisURL(t *testing.T) {
	tests := []struct {
		name      string
		state     string
		url       string
		cfg       plugins.Config
		wantState string
		wantURL   string
		wantErr   bool
	}{
		{"unset", "memory", "", plugins.Config{}, "memory", "", false},
		{"default state", "memory", "redis://h:1", plugins.Config{}, "redis", "redis://h:1", false},
		{"redis state", "redis", "redis://h:1", plugins.Config{}, "redis", "redis://h:1", false},
		{"state-config wins", "redis", "redis://h:1", plugins.Config{"url": "redis://other:2"}, "redis", "redis://other:2", false},
		{"another state", "custom", "redis://h:1", plugins.Config{}, "custom", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &serveConfig{State: tc.state, RedisURL: tc.url}
			err := applyRedisURL(c, tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if c.State != tc.wantState || tc.cfg["url"] != tc.wantURL {
				t.Errorf("state %q url %q, want %q %q", c.State, tc.cfg["url"], tc.wantState, tc.wantURL)
			}
		})
	}
}
