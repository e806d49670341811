package engine

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in, defaultNS string
		want          Selector
		canonical     string // String() of the result
	}{
		{"fraud.amount", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount"}, "fraud.amount"},
		{"fraud.amount+avg", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrAvg}, "fraud.amount+avg"},
		{"fraud.amount+mean", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrAvg}, "fraud.amount+avg"},
		{"fraud.amount+sum", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrSum}, "fraud.amount+sum"},
		{"fraud.amount+count", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrCount}, "fraud.amount+count"},
		{"fraud.amount+min", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrMin}, "fraud.amount+min"},
		{"fraud.amount+max", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrMax}, "fraud.amount+max"},
		{"geo.city@-1", "", Selector{FQN: "geo.city", Namespace: "geo", Name: "city", Version: 1}, "geo.city@-1"},
		{"geo.city@-0", "", Selector{FQN: "geo.city", Namespace: "geo", Name: "city"}, "geo.city"},
		{"geo.city@-007", "", Selector{FQN: "geo.city", Namespace: "geo", Name: "city", Version: 7}, "geo.city@-7"},
		{"geo.city@-65536", "", Selector{FQN: "geo.city", Namespace: "geo", Name: "city", Version: MaxVersion}, "geo.city@-65536"},
		{"user.email[hash]", "", Selector{FQN: "user.email", Namespace: "user", Name: "email", Encoding: "hash"}, "user.email[hash]"},
		{"fraud.amount+max@-2[json]", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrMax, Version: 2, Encoding: "json"}, "fraud.amount+max@-2[json]"},
		{"fraud.amount+sum[b64]", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrSum, Encoding: "b64"}, "fraud.amount+sum[b64]"},
		{"geo.city@-3[hash]", "", Selector{FQN: "geo.city", Namespace: "geo", Name: "city", Version: 3, Encoding: "hash"}, "geo.city@-3[hash]"},
		// Upper case is normalised to lower case, everywhere.
		{"Fraud.Amount+AVG", "", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrAvg}, "fraud.amount+avg"},
		{"USER.EMAIL[HASH]", "", Selector{FQN: "user.email", Namespace: "user", Name: "email", Encoding: "hash"}, "user.email[hash]"},
		// The default namespace applies to a bare name only.
		{"amount", "fraud", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount"}, "fraud.amount"},
		{"Amount+avg", "Fraud", Selector{FQN: "fraud.amount", Namespace: "fraud", Name: "amount", Aggr: AggrAvg}, "fraud.amount+avg"},
		{"geo.city", "fraud", Selector{FQN: "geo.city", Namespace: "geo", Name: "city"}, "geo.city"},
		{"amount", DefaultNamespace, Selector{FQN: "default.amount", Namespace: "default", Name: "amount"}, "default.amount"},
		// Names: letters, digits, inner underscores, up to MaxNameLen.
		{"a_b.c_1", "", Selector{FQN: "a_b.c_1", Namespace: "a_b", Name: "c_1"}, "a_b.c_1"},
		{"1.2", "", Selector{FQN: "1.2", Namespace: "1", Name: "2"}, "1.2"},
		{"n." + strings.Repeat("x", MaxNameLen), "", Selector{FQN: "n." + strings.Repeat("x", MaxNameLen), Namespace: "n", Name: strings.Repeat("x", MaxNameLen)}, "n." + strings.Repeat("x", MaxNameLen)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSelector(tt.in, tt.defaultNS)
			if err != nil {
				t.Fatalf("ParseSelector(%q, %q): %v", tt.in, tt.defaultNS, err)
			}
			if got != tt.want {
				t.Errorf("ParseSelector(%q, %q) = %+v, want %+v", tt.in, tt.defaultNS, got, tt.want)
			}
			if s := got.String(); s != tt.canonical {
				t.Errorf("String() = %q, want %q", s, tt.canonical)
			}
			again, err := ParseSelector(got.String(), "")
			if err != nil || again != got {
				t.Errorf("round trip of %q: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseSelectorErrors(t *testing.T) {
	tests := []struct {
		in, defaultNS string
		part          string // the part the message must name, e.g. "version:"
	}{
		{"", "", "empty selector"},
		{"", "fraud", "empty selector"},
		{"fraud.am-ount", "", `name: "am-ount" has '-'`},
		{"fr aud.amount", "", `namespace: "fr aud" has ' '`},
		{"fraud.amoünt", "", `name: "amoünt" has`},
		{"fraud.amount+", "", "aggregation: empty after '+'"},
		{"fraud.amount+@-1", "", "aggregation: empty after '+'"},
		{"fraud.amount+median", "", `aggregation: unknown aggregation "median"`},
		{"fraud.amount+avg+sum", "", `aggregation: unknown aggregation "avg+sum"`},
		{"geo.city@1", "", "version: want @-N"},
		{"geo.city@", "", "version: want @-N"},
		{"geo.city@-", "", "version: missing number after '@-'"},
		{"geo.city@-[hash]", "", "version: missing number after '@-'"},
		{"geo.city@-x", "", `version: "x" is not a number`},
		{"geo.city@-1x", "", `version: "1x" is not a number`},
		{"geo.city@-65537", "", "version: 65537 is larger than 65536"},
		{"geo.city@-99999999999999999999999999", "", "version: 99999999999999999999999999 is larger than 65536"},
		{"user.email[hash", "", "encoding: missing closing ']'"},
		{"user.email[", "", "encoding: missing closing ']'"},
		{"user.email[]", "", "encoding: empty between '[' and ']'"},
		{"user.email[ha sh]", "", `encoding: "ha sh" has ' '`},
		{"user.email[hash]x", "", `suffix: unexpected "x"`},
		{"user.email[hash]]", "", `suffix: unexpected "]"`},
		{"user.email[hash]+avg", "", `suffix: unexpected "+avg" (the order is +aggr, @-version, [encoding])`},
		{"user.email[hash][json]", "", `suffix: unexpected "[json]"`},
		{"user.email]", "", `name: "email]" has ']'`},
		{"a.b.c", "", "name: more than one '.'"},
		{"a..b", "", "name: more than one '.'"},
		{".b", "", "namespace: empty"},
		{"a.", "", "name: empty"},
		{"_a.b", "", `namespace: "_a" starts or ends with '_'`},
		{"a_.b", "", `namespace: "a_" starts or ends with '_'`},
		{"a._b", "", `name: "_b" starts or ends with '_'`},
		{"a.b_", "", `name: "b_" starts or ends with '_'`},
		{"_", "x", `name: "_" starts or ends with '_'`},
		{"+avg", "x", "name: empty"},
		{"amount", "", "namespace: missing, and no default namespace is set"},
		{"amount", "bad ns", `default namespace: "bad ns" has ' '`},
		{"n." + strings.Repeat("x", MaxNameLen+1), "", "name: 129 characters, more than 128"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			sel, err := ParseSelector(tt.in, tt.defaultNS)
			if err == nil {
				t.Fatalf("ParseSelector(%q, %q) = %+v, want an error naming %q", tt.in, tt.defaultNS, sel, tt.part)
			}
			if !errors.Is(err, ErrInvalidSelector) {
				t.Errorf("error %v does not wrap ErrInvalidSelector", err)
			}
			if !strings.Contains(err.Error(), tt.part) {
				t.Errorf("error %q does not contain %q", err, tt.part)
			}
			if tt.in != "" && !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("error %q does not quote the selector", err)
			}
		})
	}
}

func TestParseFQN(t *testing.T) {
	tests := []struct {
		in, defaultNS, want string
		wantErr             string
	}{
		{in: "fraud.amount", want: "fraud.amount"},
		{in: "Fraud.Amount", want: "fraud.amount"},
		{in: "amount", defaultNS: "geo", want: "geo.amount"},
		{in: "amount", wantErr: "namespace: missing"},
		{in: "fraud.amount+avg", wantErr: "without +aggr, @-version or [encoding]"},
		{in: "geo.city@-1", wantErr: "without +aggr"},
		{in: "user.email[hash]", wantErr: "without +aggr"},
		{in: "a.b.c", wantErr: "more than one '.'"},
	}
	for _, tt := range tests {
		got, err := ParseFQN(tt.in, tt.defaultNS)
		if tt.wantErr != "" {
			if !errors.Is(err, ErrInvalidSelector) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseFQN(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseFQN(%q, %q) = %q, %v; want %q", tt.in, tt.defaultNS, got, err, tt.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "A", "0", "a_b", "a__b", "Z9", strings.Repeat("a", MaxNameLen)} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "_", "_a", "a_", "a-b", "a.b", "a b", "é", "a\x00", strings.Repeat("a", MaxNameLen+1)} {
		if err := ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) = nil, want an error", bad)
		}
	}
}

func TestSelectorString(t *testing.T) {
	tests := []struct {
		sel  Selector
		want string
	}{
		{Selector{FQN: "a.b"}, "a.b"},
		{Selector{FQN: "a.b", Aggr: AggrMin}, "a.b+min"},
		{Selector{FQN: "a.b", Version: 12}, "a.b@-12"},
		{Selector{FQN: "a.b", Encoding: "hex"}, "a.b[hex]"},
		{Selector{FQN: "a.b", Aggr: AggrCount, Version: 1, Encoding: "hex"}, "a.b+count@-1[hex]"},
	}
	for _, tt := range tests {
		if got := tt.sel.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.sel, got, tt.want)
		}
	}
}

func TestParseSelectorAllocs(t *testing.T) {
	for _, s := range []string{"fraud.amount+avg", "geo.city@-1", "user.email[hash]", "fraud.amount+max@-2[json]"} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := ParseSelector(s, ""); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("ParseSelector(%q) allocates %v times, want 0", s, allocs)
		}
	}
}

func BenchmarkParseSelector(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSelector("fraud.amount+avg", ""); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{
		"fraud.amount", "fraud.amount+avg", "geo.city@-1", "user.email[hash]", "a.b+max@-2[json]",
		"Amount", "a.b.c", "a.b@-99999999", "a.b[x]y", "+", "@-", "[]", "_a.b", "a.b+", "",
	} {
		f.Add(s, "")
		f.Add(s, "default")
	}
	f.Fuzz(func(t *testing.T, s, defaultNS string) {
		sel, err := ParseSelector(s, defaultNS)
		if err != nil {
			if !errors.Is(err, ErrInvalidSelector) {
				t.Fatalf("error %v does not wrap ErrInvalidSelector", err)
			}
			return
		}
		if sel.FQN != sel.Namespace+"."+sel.Name || ValidName(sel.Namespace) != nil || ValidName(sel.Name) != nil {
			t.Fatalf("ParseSelector(%q, %q) = %+v: inconsistent FQN", s, defaultNS, sel)
		}
		if sel.Version < 0 || sel.Version > MaxVersion {
			t.Fatalf("ParseSelector(%q, %q) = %+v: version out of range", s, defaultNS, sel)
		}
		canon := sel.String()
		again, err := ParseSelector(canon, "")
		if err != nil {
			t.Fatalf("ParseSelector(%q) accepted, but its String() %q is rejected: %v", s, canon, err)
		}
		if again != sel {
			t.Fatalf("round trip: ParseSelector(%q) = %+v, ParseSelector(%q) = %+v", s, sel, canon, again)
		}
		if again.String() != canon {
			t.Fatalf("String() is not canonical: %q then %q", canon, again.String())
		}
	})
}
