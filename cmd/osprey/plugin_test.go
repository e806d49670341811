package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPluginCall: osprey plugin call runs a function of a Plugin manifest's module (a path
// relative to the manifest) on an input given inline, as @FILE or on stdin; the plugin's own
// error, a function it lacks and a host the policy refuses each fail with a clear message.
func TestPluginCall(t *testing.T) {
	dir := t.TempDir()
	wasm, err := os.ReadFile(filepath.Join("..", "..", "examples", "plugins", "mask", "mask.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mask.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name, spec string) string {
		path := filepath.Join(dir, name)
		doc := "apiVersion: osprey.dev/v1alpha1\nkind: Plugin\nmetadata: {name: mask, namespace: pii}\nspec:\n  module: mask.wasm\n" + spec
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ok := write("mask.yaml", "  functions: [{name: encode, role: encoder}]\n  config: {mask_char: \"#\"}\n")
	input := `{"version":1,"feature":"user.email","primitive":"string","value":"alice@example.com"}`
	if err := os.WriteFile(filepath.Join(dir, "in.json"), []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stdin string
		args        []string
		code        int
		out, errOut string
	}{
		{"inline", "", []string{"plugin", "call", "-f", ok, "encode", input}, 0, `{"value":"a####@example.com"}`, ""},
		{"@file", "", []string{"plugin", "call", "-f", ok, "encode", "@" + filepath.Join(dir, "in.json")}, 0, `{"value":"a####@example.com"}`, ""},
		{"stdin", input, []string{"plugin", "call", "-f", ok, "encode", "-"}, 0, `{"value":"a####@example.com"}`, ""},
		{"its own error", "", []string{"plugin", "call", "-f", ok, "encode", `{"version":1,"value":5}`}, 1, "", "value must be a string"},
		{"a function it lacks", "", []string{"plugin", "call", "-f", write("lacks.yaml", "  functions: [{name: nope, role: encoder}]\n"), "nope", "{}"}, 1, "", `spec.functions: "nope"`},
		{"a host the policy refuses", "", []string{"plugin", "call", "-f", write("hosts.yaml", "  functions: [{name: encode, role: encoder}]\n  allowedHosts: [api.example.com]\n"), "encode", input},
			1, "", "spec.allowedHosts[0]"},
		{"a host the flags allow", "", []string{"plugin", "call", "-f", write("hosts2.yaml", "  functions: [{name: encode, role: encoder}]\n  allowedHosts: [api.example.com]\n"),
			"--plugin-allowed-hosts", "*.example.com", "encode", input}, 0, `{"value":"a****@example.com"}`, ""}, // flags before FUNCTION and INPUT
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			code, out, errOut := runCLI(t, tc.stdin, args...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.errOut) {
				t.Fatalf("osprey %s = %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
			}
		})
	}
}
