package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/server"
)

// keyWord matches a KEY=VALUE word: a key name (letters, digits, _ . -, not starting with a
// digit), then =.
var keyWord = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*=`)

// writeArgs parses the words of a write after its FQN: KEY=VALUE… VALUE. The VALUE is the
// last word, and must not look like KEY=VALUE: that is a missing value (a string holding
// "=" is written quoted as JSON, '"a=b"').
func writeArgs(op string, words []string) (map[string]string, string, error) {
	usage := fmt.Sprintf("osprey %s FQN KEY=VALUE… VALUE", op)
	if len(words) == 0 {
		return nil, "", fmt.Errorf("missing the keys and the value (%s)", usage)
	}
	last := words[len(words)-1]
	if keyWord.MatchString(last) {
		return nil, "", fmt.Errorf("missing the value after the keys (%s; a string holding = is quoted as JSON: '\"a=b\"')", usage)
	}
	keys := map[string]string{}
	for _, w := range words[:len(words)-1] {
		if !keyWord.MatchString(w) {
			return nil, "", fmt.Errorf("%q is not KEY=VALUE: the keys come first, then one value (%s)", w, usage)
		}
		k, v, _ := strings.Cut(w, "=")
		if _, dup := keys[k]; dup {
			return nil, "", fmt.Errorf("key %q given twice", k)
		}
		keys[k] = v
	}
	return keys, last, nil
}

// entityArgs parses the KEY=VALUE words of get-many into entities: a key given again starts
// the next entity (card_id=c1 card_id=c2; user_id=u1 device=a user_id=u2 device=b).
func entityArgs(words []string) ([]map[string]string, error) {
	var out []map[string]string
	cur := map[string]string{}
	for _, w := range words {
		if !keyWord.MatchString(w) {
			return nil, fmt.Errorf("%q is not KEY=VALUE", w)
		}
		k, v, _ := strings.Cut(w, "=")
		if _, again := cur[k]; again {
			out = append(out, cur)
			cur = map[string]string{}
		}
		cur[k] = v
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	if len(out) == 0 {
		return nil, errors.New("want at least one entity, KEY=VALUE…")
	}
	return out, nil
}

// splitSelectors splits SELECTOR[,SELECTOR…], dropping empty parts.
func splitSelectors(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// runDelete deletes a feature (or data source) from the host's registry.
func runDelete(ctx context.Context, e *env, c *clients, args []string, _ *flag.FlagSet) error {
	if len(args) != 1 {
		return fmt.Errorf("want one FQN, got %d arguments", len(args))
	}
	res, err := c.registry.DeleteFeature(ctx, connect.NewRequest(&ospreyv1.DeleteFeatureRequest{Fqn: args[0]}))
	if err != nil {
		return err
	}
	return c.print(e.stdout, res.Msg, func() { fmt.Fprintf(e.stdout, "deleted %s\n", args[0]) })
}

// runGetMany reads a feature vector (several selectors) for several entities and prints it
// as a table: one row per entity, one column per selector.
func runGetMany(ctx context.Context, e *env, c *clients, args []string, _ *flag.FlagSet) error {
	selectors := splitSelectors(args[0])
	if len(selectors) == 0 {
		return errors.New("want SELECTOR[,SELECTOR…]")
	}
	entities, err := entityArgs(args[1:])
	if err != nil {
		return err
	}
	req := &ospreyv1.GetManyRequest{Selectors: selectors}
	for _, keys := range entities {
		req.Entities = append(req.Entities, &ospreyv1.Entity{Keys: keys})
	}
	res, err := c.engine.GetMany(ctx, connect.NewRequest(req))
	if err != nil {
		return err
	}
	return c.print(e.stdout, res.Msg, func() { printVector(e.stdout, selectors, entities, res.Msg) })
}

// printVector prints a GetMany answer as a table: the entity's keys, then a cell per
// selector: its value and fresh or stale, absent, or the cell's error.
func printVector(w io.Writer, selectors []string, entities []map[string]string, res *ospreyv1.GetManyResponse) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTITY\t"+strings.Join(selectors, "\t"))
	for i, r := range res.Results {
		cells := []string{formatKeys(entities[min(i, len(entities)-1)])}
		for _, f := range r.Features {
			switch {
			case f.Error != "":
				cells = append(cells, "error: "+f.Error)
			case !f.Found:
				cells = append(cells, "absent")
			default:
				cells = append(cells, fmt.Sprintf("%s (%s)", formatValue(f.Value), freshWord(f.Fresh)))
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// freshWord names a value's freshness as the CLI prints it: fresh (younger than the
// feature's freshness) or stale (older, but younger than its staleness, so still served).
func freshWord(fresh bool) string {
	if fresh {
		return "fresh"
	}
	return "stale"
}

// formatKeys writes keys as k=v words in key order.
func formatKeys(keys map[string]string) string {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = k + "=" + keys[k]
	}
	return strings.Join(parts, " ")
}

// runWatch streams the changes of a feature — of the entities given, or of every entity —
// until Ctrl-C (or --timeout, when set).
func runWatch(ctx context.Context, e *env, c *clients, args []string, _ *flag.FlagSet) error {
	req := &ospreyv1.WatchRequest{Fqn: args[0]}
	if len(args) > 1 {
		entities, err := entityArgs(args[1:])
		if err != nil {
			return err
		}
		for _, keys := range entities {
			req.Entities = append(req.Entities, &ospreyv1.Entity{Keys: keys})
		}
	}
	stream, err := c.engine.Watch(ctx, connect.NewRequest(req))
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
		m := stream.Msg()
		if err := c.print(e.stdout, m, func() {
			v := ""
			if m.Value != nil {
				v = " = " + formatValue(m.Value)
			}
			fmt.Fprintf(e.stdout, "%s %s %s %s%s\n", m.Timestamp.AsTime().UTC().Format(time.RFC3339Nano), m.Op, m.Fqn, formatKeys(m.Keys), v)
		}); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil // Ctrl-C, or the --timeout given
	}
	if err := stream.Err(); err != nil {
		return fmt.Errorf("the stream ended: %w", serverError(err))
	}
	return errors.New("the server ended the stream")
}

// buildVersion is the binary's version: the one set at build time (-ldflags "-X
// main.version=…"), else the main module's from the build info (v1.2.3 after go install
// …@v1.2.3), with the VCS revision for a build from a checkout.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	return versionOf(info)
}

func versionOf(info *debug.BuildInfo) string {
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" && !strings.Contains(v, rev[:min(12, len(rev))]) {
		v += fmt.Sprintf(" (%s%s)", rev[:min(12, len(rev))], modified)
	}
	return v + " " + info.GoVersion
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// printGet prints a read as osprey get and the shell do: the value, fresh or stale (see
// freshWord) and its timestamp, or absent.
func printGet(w io.Writer, selector string, found, fresh bool, v *ospreyv1.Value, ts time.Time) {
	if !found {
		fmt.Fprintf(w, "%s: absent\n", selector)
		return
	}
	fmt.Fprintf(w, "%s = %s  (%s, at %s)\n", selector, formatValue(v), freshWord(fresh), ts.UTC().Format(time.RFC3339))
}

// readRowLines reads JSON Lines (one object a line; blank lines skipped) from a file or "-",
// returning each row with the line it is on.
func readRowLines(stdin io.Reader, path string) ([]*ospreyv1.Row, []int, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		r = f
	}
	var rows []*ospreyv1.Row
	var lines []int
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		s, err := jsonRow(line)
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		rows = append(rows, s)
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, lines, nil
}

// jsonRow decodes one row, a JSON object, saying so when the text is not one, into a row
// with typed values: numbers are read exactly (an integer literal is an int64, even beyond
// ±2^53, where a google.protobuf.Struct would round it), with the same rules as the
// server's for a Struct row (engine.RowFromMap). Null fields are left out.
func jsonRow(text string) (*ospreyv1.Row, error) {
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	err := dec.Decode(&m)
	if err == nil && dec.More() {
		err = errors.New("text after the object")
	}
	if err != nil {
		var x any
		if json.Unmarshal([]byte(text), &x) == nil {
			return nil, fmt.Errorf("a row is a JSON object, {…}; got %s", clip(text))
		}
		return nil, fmt.Errorf("not JSON (%v): %s", err, clip(text))
	}
	if m == nil {
		return nil, errors.New("a row is a JSON object, {…}; got null")
	}
	for name, v := range m {
		if n, ok := v.(json.Number); ok && isIntLiteral(string(n)) {
			if _, err := n.Int64(); err != nil {
				return nil, fmt.Errorf("field %q: the integer %s is outside the int64 range", name, n)
			}
		}
		if _, ok := v.(map[string]any); ok {
			return nil, fmt.Errorf("field %q: an object is not a row value (want a number, string, bool, null or a list of one kind)", name)
		}
	}
	row, err := engine.RowFromMap(m)
	if err != nil {
		return nil, err
	}
	out := &ospreyv1.Row{Fields: make(map[string]*ospreyv1.Value, len(row))}
	for name, v := range row {
		if !v.IsNull() {
			out.Fields[name] = server.ValueProto(v)
		}
	}
	return out, nil
}

// isIntLiteral reports whether a JSON number is written without a fraction or exponent.
func isIntLiteral(n string) bool { return !strings.ContainsAny(n, ".eE") }

// clip shortens text for an error message.
func clip(s string) string {
	if r := []rune(s); len(r) > 60 {
		return string(r[:60]) + "…"
	}
	return s
}

// rowIndex matches the field of a row's violation in an Ingest error: rows[3], typed_rows[3].amount.
var rowIndex = regexp.MustCompile(`^(?:typed_)?rows\[(\d+)\](?:\..+)?$`)

// ingestFailure rewrites a failed Ingest of rows read from path (lines[i]: the line of the
// batch's row i) so that each failing row is named by its line: path:line: what failed.
func ingestFailure(path string, lines []int, err error) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err
	}
	var out []string
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		br, ok := v.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		for _, fv := range br.FieldViolations {
			m := rowIndex.FindStringSubmatch(fv.Field)
			if m == nil {
				continue
			}
			i, _ := strconv.Atoi(m[1])
			if i >= len(lines) {
				continue
			}
			out = append(out, fmt.Sprintf("%s:%d: %s", path, lines[i], fv.Description))
		}
	}
	if len(out) == 0 {
		return fmt.Errorf("lines %d–%d of %s: %w", lines[0], lines[len(lines)-1], path, serverError(err))
	}
	return fmt.Errorf("%s: nothing written:\n%s", ce.Code(), strings.Join(out, "\n"))
}

// dryRunArgs parses dry-run's words after the FQN: a row ('{…}', a file of one, or - for
// stdin) and KEY=VALUE keys, in any order.
func dryRunArgs(stdin io.Reader, words []string) (*ospreyv1.Row, map[string]string, error) {
	var row *ospreyv1.Row
	keys := map[string]string{}
	for _, a := range words {
		var r *ospreyv1.Row
		switch {
		case strings.HasPrefix(strings.TrimSpace(a), "{"):
			s, err := jsonRow(a)
			if err != nil {
				return nil, nil, fmt.Errorf("row: %w", err)
			}
			r = s
		case a == "-" || fileExists(a):
			rows, lines, err := readRowLines(stdin, a)
			if err != nil {
				return nil, nil, err
			}
			if len(rows) != 1 {
				return nil, nil, fmt.Errorf("%s: want one row, found %d (lines %v)", a, len(rows), lines)
			}
			r = rows[0]
		case keyWord.MatchString(a):
			k, v, _ := strings.Cut(a, "=")
			if _, dup := keys[k]; dup {
				return nil, nil, fmt.Errorf("key %q given twice", k)
			}
			keys[k] = v
			continue
		default:
			return nil, nil, fmt.Errorf("%q is neither a row (a JSON object, '{…}'), a file of one, - (stdin) nor KEY=VALUE", clip(a))
		}
		if row != nil {
			return nil, nil, errors.New("more than one row: a dry run takes one")
		}
		row = r
	}
	return row, keys, nil
}
