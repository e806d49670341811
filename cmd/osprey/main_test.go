package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"-log-format", "json", "-log-level", "warn"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestDevShell(t *testing.T) {
	script := `
update shop.spend card_id=c1 12.5
update shop.spend card_id=c1 40 --at 2000-01-01T00:00:00Z
update shop.spend card_id=c1 40
get shop.spend+avg card_id=c1
get shop.spend+max card_id=c1
set geo.city user_id=u1 Lisbon
set geo.city user_id=u1 "Porto Santo"
get geo.city@-1 user_id=u1
get geo.city user_id=u1
append shop.recent_merchants card_id=c1 '["a","b"]'
append shop.recent_merchants card_id=c1 c
incr user.logins user_id=u1 device=phone 2
incr user.logins user_id=u1 device=phone 3
get user.logins user_id=u1
get user.logins user_id=u1 device=phone
set geo.city user_id=u2 3
get nope.nope id=1
frobnicate
get geo.city user_id=nobody
`
	code, out, errOut := runCLI(t, script, "shell")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"older than the window",                    // the 2000 write is refused, not dropped silently
		"shop.spend+avg = 26.25  (fresh",           // (12.5+40)/2
		"shop.spend+max = 40  (fresh",              //
		`geo.city@-1 = "Lisbon"`,                   // previous version
		`geo.city = "Porto Santo"`,                 // quoted words
		`ok shop.recent_merchants = ["a" "b" "c"]`, // append of a list then an element, as the CLI prints it
		"ok user.logins = 5",                       // incr 2 + 3
		`missing key "device"`,                     // keys are required
		"user.logins = 5",                          //
		`ok geo.city = "3"`,                        // a number for a string feature is its text
		"feature not found: nope.nope",             //
		`unknown command "frobnicate"`,             //
		"geo.city: absent",                         //
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestValidate(t *testing.T) {
	code, out, errOut := runCLI(t, "", "validate", "../../examples/quickstart")
	if code != 0 || !strings.Contains(out, "shop.spend") || !strings.Contains(out, "window=1h0m0s/1m0s") {
		t.Fatalf("validate examples: exit %d\n%s%s", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	manifest := "apiVersion: osprey.dev/v1alpha1\nkind: Feature\nmetadata: {name: x, namespace: t}\nspec:\n  primitive: int\n  freshness: 1h\n  staleness: 1m\n  keys: [id]\n"
	if err := os.WriteFile(bad, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "", "validate", bad)
	if code != 1 || !strings.Contains(errOut, "spec.staleness") || !strings.Contains(errOut, "bad.yaml") {
		t.Fatalf("validate bad manifest: exit %d, stderr %q", code, errOut)
	}
}

func TestUsage(t *testing.T) {
	if code, _, errOut := runCLI(t, "", "nope"); code != 2 || !strings.Contains(errOut, `unknown command "nope"`) {
		t.Fatalf("unknown command: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCLI(t, ""); code != 2 || !strings.Contains(errOut, "Commands:") {
		t.Fatalf("no command: exit %d, %q", code, errOut)
	}
	if code, out, _ := runCLI(t, "", "version"); code != 0 || !strings.HasPrefix(out, "osprey ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}
