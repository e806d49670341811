package engine

import (
	"slices"
	"testing"
)

func TestSuggest(t *testing.T) {
	names := []string{"fraud.amount", "fraud.limit", "fraud.utilisation", "geo.city", "payments.amount"}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"fraud.amont", []string{"fraud.amount"}},
		{"fraud.amuont", []string{"fraud.amount"}},
		{"Fraud.Limit", []string{"fraud.limit"}},
		{"fraud.utilization", []string{"fraud.utilisation"}},
		{"amount", []string{"fraud.amount", "payments.amount"}},
		{"geo.town", nil},
		{"zzz", nil},
		{"fraud.amount", nil}, // itself is no suggestion
	} {
		if got := suggest(tc.name, names); !slices.Equal(got, tc.want) {
			t.Errorf("suggest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"cardid", "card_id", 1},
		{"amuont", "amount", 1}, {"kitten", "sitting", 3}, {"café", "cafe", 1},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, " (did you mean a?)"},
		{[]string{"a", "b", "c"}, " (did you mean a, b or c?)"},
	} {
		if got := didYouMean(tc.in); got != tc.want {
			t.Errorf("didYouMean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCheckKeysNamesUnknownKey(t *testing.T) {
	for _, tc := range []struct {
		names []string
		keys  Keys
		want  string
	}{
		{[]string{"card_id"}, Keys{"cardid": "c1"}, `invalid keys: unknown key "cardid" (want card_id)`},
		{[]string{"card_id"}, Keys{}, `invalid keys: missing key "card_id" (want card_id)`},
		{[]string{"user_id", "device"}, Keys{"user_id": "u1", "devise": "p"}, `invalid keys: unknown key "devise" (want user_id, device)`},
		{[]string{"card_id"}, Keys{"card_id": "c1", "at": "x"}, `invalid keys: unknown key "at" (want card_id)`},
	} {
		err := checkKeys(tc.names, tc.keys)
		if err == nil || err.Error() != tc.want {
			t.Errorf("checkKeys(%v, %v) = %v, want %s", tc.names, tc.keys, err, tc.want)
		}
	}
}
