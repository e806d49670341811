package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/osprey-ml/osprey/engine"
	ospreyv1 "github.com/osprey-ml/osprey/gen/osprey/v1"
	"github.com/osprey-ml/osprey/historian"
	"github.com/osprey-ml/osprey/internal/parquetgroup"
	"github.com/osprey-ml/osprey/manifest"
	"github.com/osprey-ml/osprey/plugins"
	"github.com/osprey-ml/osprey/server"
)

const historyUsage = `Usage: osprey history COMMAND [flags]

Reads the history the historian wrote (docs/history.md) from its store directly: an offline
tool, no server needed.

Commands:
  list [FQN]                         the partitions and objects of the history, with a total
  get SELECTOR KEY=VALUE… --at TIME  the value a read answered as of TIME [--as-written]
  export --entities FILE --features SEL[,SEL…] --out FILE
                                     a point-in-time join: every entity row with the features'
                                     values as of the row's timestamp

The store is the one osprey serve and dev write to: --history, --history-config and
--data-dir (default .osprey, so .osprey/history). get and export take the features'
descriptors from manifests (-f FILE|DIR, repeatable) or, without -f, from the host at --addr.
Run osprey history COMMAND -h for a command's flags.`

func runHistory(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, historyUsage)
		return errors.New("want a command: list, get or export")
	}
	switch args[0] {
	case "list":
		return runHistoryList(ctx, e, args[1:])
	case "get":
		return runHistoryGet(ctx, e, args[1:])
	case "export":
		return runHistoryExport(ctx, e, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(e.stderr, historyUsage)
		return flag.ErrHelp
	}
	return fmt.Errorf("unknown command %q (want list, get or export)", args[0])
}

// historyStore holds the flags naming the history store, those of osprey serve.
type historyStore struct{ cfg serveConfig }

func (h *historyStore) register(fs *flag.FlagSet) {
	fs.StringVar(&h.cfg.History, "history", os.Getenv("OSPREY_HISTORY"), "history store by name: "+strings.Join(plugins.HistoryStoreNames(), ", ")+"; empty: file in <data-dir>/history (env OSPREY_HISTORY)")
	fs.StringVar(&h.cfg.HistoryConfig, "history-config", os.Getenv("OSPREY_HISTORY_CONFIG"), "history store config, key=value,… as osprey serve takes it (file: dir; s3: endpoint, bucket, prefix, …; see docs/history.md) (env OSPREY_HISTORY_CONFIG)")
	fs.StringVar(&h.cfg.DataDir, "data-dir", envOr("OSPREY_DATA_DIR", ".osprey"), "the data directory of osprey dev or serve, whose history subdirectory is the default file store (env OSPREY_DATA_DIR)")
}

// open opens the store, as osprey serve would write to it. A file store's directory must
// exist: reading does not create one.
func (h *historyStore) open(ctx context.Context) (historian.Storage, error) {
	name := historyStoreName(&h.cfg)
	if name == "" {
		return nil, errors.New("no history store: --history none, or no --data-dir (name one with --history and --history-config)")
	}
	cfg, err := parseKV(h.cfg.HistoryConfig, "history-config")
	if err != nil {
		return nil, err
	}
	if name == "file" {
		if cfg["dir"] == "" {
			if h.cfg.DataDir == "" {
				return nil, errors.New("history-config: the file history store needs dir=PATH (or --data-dir)")
			}
			cfg["dir"] = filepath.Join(h.cfg.DataDir, "history")
		}
		if st, err := os.Stat(cfg["dir"]); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("no history in %s (is it the --data-dir of osprey dev or serve, or --history-config dir=…?): %w", cfg["dir"], errOrNotDir(err))
		}
	}
	s, err := plugins.NewHistoryStore(ctx, name, cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func errOrNotDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("not a directory")
}

// featureSource holds the flags that say where features' descriptors come from: manifests,
// or a running host.
type featureSource struct {
	files  multiFlag
	client clientFlags
}

func (fsrc *featureSource) register(fs *flag.FlagSet) {
	fs.Var(&fsrc.files, "f", "a manifest file or directory giving the features' descriptors (repeatable); without -f they come from the host at --addr")
	fsrc.client.register(fs)
}

// features returns the features the manifests or the host describe, by FQN, and where they
// came from (for error messages).
func (fsrc *featureSource) features(ctx context.Context) (map[string]*engine.Feature, string, error) {
	out := map[string]*engine.Feature{}
	if len(fsrc.files) > 0 {
		ms, err := manifest.Load(fsrc.files...)
		if err != nil {
			return nil, "", err
		}
		for _, m := range ms {
			if m.Feature != nil {
				out[m.Feature.FQN] = m.Feature
			}
		}
		return out, "the manifests (-f " + strings.Join(fsrc.files, ", ") + ")", nil
	}
	from := "the host at " + fsrc.client.addr
	c, err := fsrc.client.dial()
	if err != nil {
		return nil, "", err
	}
	cctx, cancel := context.WithTimeout(ctx, fsrc.client.timeout)
	defer cancel()
	res, err := c.registry.ListFeatures(cctx, connect.NewRequest(&ospreyv1.ListFeaturesRequest{}))
	if err != nil {
		return nil, "", fmt.Errorf("listing the features of %s (or give their manifests with -f): %w", from, serverError(err))
	}
	for _, p := range res.Msg.Features {
		f, err := featureFromProto(p)
		if err != nil {
			return nil, "", fmt.Errorf("%s: feature %s: %w", from, p.Fqn, err)
		}
		out[f.FQN] = f
	}
	return out, from, nil
}

// featureFromProto takes from a host's description of a feature what history reads need.
func featureFromProto(p *ospreyv1.Feature) (*engine.Feature, error) {
	prim, err := engine.ParsePrimitive(p.Primitive)
	if err != nil {
		return nil, err
	}
	var aggrs engine.AggrSet
	for _, a := range p.Aggregations {
		fn, err := engine.ParseAggrFn(a)
		if err != nil {
			return nil, err
		}
		aggrs = aggrs.With(fn)
	}
	return &engine.Feature{FQN: p.Fqn, Primitive: prim, Aggrs: aggrs, Granularity: p.Granularity.AsDuration(),
		Freshness: p.Freshness.AsDuration(), Staleness: p.Staleness.AsDuration(), Keys: slices.Clone(p.Keys),
		Builder: engine.Builder{Kind: p.GetBuilder().GetKind()}}, nil
}

// historySelector is a selector of a history read with its feature.
type historySelector struct {
	text string // as given
	sel  engine.Selector
	f    *engine.Feature
}

func resolveSelector(text string, features map[string]*engine.Feature, from string) (historySelector, error) {
	sel, err := engine.ParseSelector(strings.TrimSpace(text), engine.DefaultNamespace)
	if err != nil {
		return historySelector{}, err
	}
	f := features[sel.FQN]
	if f == nil {
		names := make([]string, 0, len(features))
		for n := range features {
			names = append(names, n)
		}
		sort.Strings(names)
		return historySelector{}, fmt.Errorf("selector %q: %w: %s is not in %s (it has %s)", text, engine.ErrFeatureNotFound, sel.FQN, from, listOrNone(names))
	}
	if err := historian.CheckSelector(f, sel); err != nil {
		return historySelector{}, fmt.Errorf("selector %q: %w", text, err)
	}
	return historySelector{text: strings.TrimSpace(text), sel: sel, f: f}, nil
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "no features"
	}
	const most = 20
	if len(names) > most {
		return strings.Join(names[:most], ", ") + fmt.Sprintf(", … (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}

// parseInstant parses an instant: RFC 3339 (2026-12-01T10:00:00Z, fractions allowed) or Unix
// seconds (1733047200, or 1733047200.5), within the years 1678 to 2262.
func parseInstant(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		var ok bool
		if t, ok = parseUnixSeconds(s); !ok {
			return time.Time{}, fmt.Errorf("%q is not a time (want RFC 3339, e.g. 2026-12-01T10:00:00Z, or Unix seconds)", s)
		}
	}
	if t.Before(time.Unix(0, math.MinInt64)) || t.After(time.Unix(0, math.MaxInt64)) {
		return time.Time{}, fmt.Errorf("%q is outside the years 1678 to 2262", s)
	}
	return t.UTC(), nil
}

// parseUnixSeconds parses [-]digits[.digits] exactly to the nanosecond.
func parseUnixSeconds(s string) (time.Time, bool) {
	neg := strings.HasPrefix(s, "-")
	whole, frac, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if whole == "" || len(frac) > 9 || strings.ContainsAny(whole+frac, "+-eE") {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || sec > 1<<40 {
		return time.Time{}, false
	}
	var ns int64
	if frac != "" {
		n, err := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		ns = n
	}
	if neg {
		sec, ns = -sec, -ns
	}
	return time.Unix(sec, ns), true
}

// runHistoryList lists the history's partitions and objects.
func runHistoryList(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("history list", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var store historyStore
	store.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: osprey history list [FQN] [flags]\n\nLists the history's partitions (fqn=…/date=…) and their objects — key, size, modified —\nsorted by key, and a total.\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, err := parseClientArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		fs.Usage()
		return errors.New("want at most one FQN")
	}
	prefix := ""
	if len(pos) == 1 {
		fqn, err := engine.ParseFQN(pos[0], engine.DefaultNamespace)
		if err != nil {
			return err
		}
		prefix = "fqn=" + fqn + "/"
	}
	s, err := store.open(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	all, err := s.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("listing %q: %w", prefix, err)
	}
	objs := all[:0:0]
	for _, o := range all { // the leaders' flush manifests are bookkeeping, not history
		if !strings.HasPrefix(o.Key, historian.FlushManifestPrefix) {
			objs = append(objs, o)
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	type partition struct {
		name  string
		objs  []historian.ObjectInfo
		bytes int64
	}
	var parts []*partition
	features := map[string]bool{}
	var total int64
	for _, o := range objs {
		name := o.Key
		if i := strings.LastIndexByte(name, '/'); i >= 0 {
			name = name[:i]
		}
		if n := len(parts); n == 0 || parts[n-1].name != name {
			parts = append(parts, &partition{name: name})
		}
		p := parts[len(parts)-1]
		p.objs = append(p.objs, o)
		p.bytes += o.Size
		total += o.Size
		if fqn, _, ok := strings.Cut(o.Key, "/"); ok {
			features[fqn] = true
		}
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, p := range parts {
		fmt.Fprintf(tw, "%s/\t%s\t%d bytes\t\n", p.name, plural(len(p.objs), "object"), p.bytes)
		for _, o := range p.objs {
			mod := "-"
			if !o.Modified.IsZero() {
				mod = o.Modified.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t\n", o.Key[len(p.name)+1:], o.Size, mod)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "total: %s, %d bytes, in %s of %s\n", plural(len(objs), "object"), total,
		plural(len(parts), "partition"), plural(len(features), "feature"))
	return err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// runHistoryGet prints the value a read answered as of an instant.
func runHistoryGet(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("history get", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var store historyStore
	store.register(fs)
	var src featureSource
	src.register(fs)
	atFlag := fs.String("at", "", "the instant: RFC 3339 (2026-12-01T10:00:00Z) or Unix seconds (required)")
	asWritten := fs.Bool("as-written", false, "count only what had been written by then: exactly what the online store served at that instant (default: every write with a timestamp up to then, backfills included)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "Usage: osprey history get SELECTOR KEY=VALUE… --at TIME [--as-written] [flags]\n\nPrints the value a read of SELECTOR for the entity answered as of TIME, as osprey get prints\none (fresh or stale, and its timestamp), or that there was none.\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, err := parseClientArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 || *atFlag == "" {
		fs.Usage()
		return errors.New("want SELECTOR KEY=VALUE… --at TIME")
	}
	if src.client.output != "text" && src.client.output != "json" {
		return fmt.Errorf("--output %q: want text or json", src.client.output)
	}
	at, err := parseInstant(*atFlag)
	if err != nil {
		return fmt.Errorf("--at: %w", err)
	}
	keys, err := keyArgs(pos[1:])
	if err != nil {
		return err
	}
	features, from, err := src.features(ctx)
	if err != nil {
		return err
	}
	hs, err := resolveSelector(pos[0], features, from)
	if err != nil {
		return err
	}
	ekeys, err := engine.EncodeKeys(hs.f.Keys, keys)
	if err != nil {
		return fmt.Errorf("%s: %w", hs.f.FQN, err)
	}
	s, err := store.open(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	to := at
	if *asWritten {
		to = time.Time{} // a write dated after the instant may have been served then
	}
	recs, err := historian.LoadFeature(ctx, s, hs.f, at, to)
	if err != nil {
		return err
	}
	tl, err := historian.NewTimeline(hs.f, recs, historian.AsOfOptions{AsWritten: *asWritten})
	if err != nil {
		return err
	}
	res, err := tl.AsOf(ekeys, at, hs.sel)
	if err != nil {
		return err
	}
	m := &ospreyv1.GetResponse{Fqn: res.FQN, Value: server.ValueProto(res.Value), Fresh: res.Fresh, Found: res.Found()}
	if res.Found() {
		m.Timestamp = timestamppb.New(res.Timestamp)
	}
	c := &clients{flags: &src.client}
	return c.print(e.stdout, m, func() {
		if !res.Found() {
			fmt.Fprintf(e.stdout, "%s: no value at %s\n", hs.text, at.Format(time.RFC3339Nano))
			return
		}
		printGet(e.stdout, hs.text, true, res.Fresh, m.Value, res.Timestamp)
	})
}

// runHistoryExport writes a point-in-time join of an entity file with features.
func runHistoryExport(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("history export", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var store historyStore
	store.register(fs)
	var src featureSource
	src.register(fs)
	entities := fs.String("entities", "", "the entity file: CSV with a header row, JSON Lines or Parquet (required; - for CSV or JSON Lines on standard input)")
	entitiesFormat := fs.String("entities-format", "", "the entity file's format: csv, jsonl or parquet (default: by its extension)")
	featuresFlag := fs.String("features", "", "the selectors to join, comma-separated, e.g. fraud.amount+avg,fraud.limit (required)")
	out := fs.String("out", "", "the file to write (required; - for standard output)")
	format := fs.String("format", "", "the output format: parquet or csv (default: csv for a .csv --out, parquet otherwise)")
	tsColumn := fs.String("timestamp-column", "timestamp", "the entity file's column holding each row's instant: RFC 3339, Unix seconds, or a Parquet timestamp")
	asWritten := fs.Bool("as-written", false, "count only what had been written by each row's instant: exactly what the online store served then (default: every write with a timestamp up to then, backfills included)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, `Usage: osprey history export --entities FILE --features SEL[,SEL…] --out FILE [flags]

A point-in-time join: one output row per entity row, in order, with the entity file's columns
followed by one column per selector, named by it, holding the value a read answered as of the
row's timestamp (null when none was servable). The entity file has a column per entity key of
the features and a timestamp column. Parquet output has a column type per primitive (a
window without +aggr is a group of its aggregations); CSV output writes lists and windows as
JSON and no value as an empty field.

Flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseClientArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *entities == "" || *featuresFlag == "" || *out == "" {
		fs.Usage()
		return errors.New("want --entities FILE --features SEL[,SEL…] --out FILE")
	}
	outFormat := *format
	if outFormat == "" {
		outFormat = "parquet"
		if strings.EqualFold(filepath.Ext(*out), ".csv") {
			outFormat = "csv"
		}
	}
	if outFormat != "parquet" && outFormat != "csv" {
		return fmt.Errorf("--format %q: want parquet or csv", outFormat)
	}
	inFormat, err := entityFormat(*entities, *entitiesFormat)
	if err != nil {
		return err
	}
	features, from, err := src.features(ctx)
	if err != nil {
		return err
	}
	var sels []historySelector
	seen := map[string]bool{}
	for _, text := range strings.Split(*featuresFlag, ",") {
		if strings.TrimSpace(text) == "" {
			continue
		}
		hs, err := resolveSelector(text, features, from)
		if err != nil {
			return fmt.Errorf("--features: %w", err)
		}
		if seen[hs.text] {
			return fmt.Errorf("--features: %s is given twice", hs.text)
		}
		seen[hs.text] = true
		sels = append(sels, hs)
	}
	if len(sels) == 0 {
		return errors.New("--features: no selector")
	}
	s, err := store.open(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	x := &exporter{path: *entities, tsName: *tsColumn, sels: sels, asWritten: *asWritten}
	rd, err := openEntities(e.stdin, *entities, inFormat)
	if err != nil {
		return fmt.Errorf("entities %s: %w", *entities, err)
	}
	defer rd.close()
	if err := x.plan(rd.columns()); err != nil {
		return err
	}
	if err := x.load(ctx, e, s); err != nil {
		return err
	}
	rows, found, err := x.write(ctx, e, rd, *out, outFormat)
	if err != nil {
		return err
	}
	summary := fmt.Sprintf("exported %s × %s to %s (%d values, %d null)", plural(rows, "row"), plural(len(sels), "feature"),
		*out, found, rows*len(sels)-found)
	if *out == "-" {
		e.log.Info(summary)
		return nil
	}
	_, err = fmt.Fprintln(e.stdout, summary)
	return err
}

func entityFormat(path, given string) (string, error) {
	if given != "" {
		switch given {
		case "csv", "jsonl", "parquet":
			return given, nil
		}
		return "", fmt.Errorf("--entities-format %q: want csv, jsonl or parquet", given)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return "csv", nil
	case ".jsonl", ".ndjson", ".json":
		return "jsonl", nil
	case ".parquet", ".pq":
		return "parquet", nil
	}
	return "", fmt.Errorf("entities %s: cannot tell its format from its extension; set --entities-format csv, jsonl or parquet", path)
}

// exporter is one export's plan: the selectors, their timelines and the entity columns.
type exporter struct {
	path      string
	tsName    string
	sels      []historySelector
	asWritten bool

	cols  []string
	tsCol int
	// keysets are the distinct key lists of the features, each with its columns; selector i
	// reads keysets[selKeyset[i]].
	keysets   []keyset
	selKeyset []int
	timelines map[string]*historian.Timeline // by FQN
	// local maps, by FQN, an entity's ID in its keyset to its index in the feature's
	// timeline (-1: no history), so that a row looks its entity up once per keyset.
	local map[string][]int32
}

type keyset struct {
	names []string
	cols  []int
	keys  engine.Keys // reused for each row
	// ids numbers the entities with history in any timeline of the keyset's features.
	ids map[string]int32
}

// plan checks the entity columns against the selectors.
func (x *exporter) plan(cols []string) error {
	x.cols = cols
	index := map[string]int{}
	for i, c := range cols {
		if _, dup := index[c]; dup {
			return fmt.Errorf("entities %s: column %q appears twice", x.path, c)
		}
		index[c] = i
	}
	ts, ok := index[x.tsName]
	if !ok {
		return fmt.Errorf("entities %s: no timestamp column %q (the columns are %s; name it with --timestamp-column)", x.path, x.tsName, strings.Join(cols, ", "))
	}
	x.tsCol = ts
	for _, hs := range x.sels {
		if _, clash := index[hs.text]; clash {
			return fmt.Errorf("entities %s: column %q has the name of a selector's output column", x.path, hs.text)
		}
		k := slices.IndexFunc(x.keysets, func(k keyset) bool { return slices.Equal(k.names, hs.f.Keys) })
		if k < 0 {
			ks := keyset{names: hs.f.Keys, keys: engine.Keys{}}
			for _, name := range hs.f.Keys {
				c, ok := index[name]
				if !ok {
					return fmt.Errorf("entities %s: no column %q, a key of %s (the columns are %s)", x.path, name, hs.f.FQN, strings.Join(cols, ", "))
				}
				ks.cols = append(ks.cols, c)
			}
			k = len(x.keysets)
			x.keysets = append(x.keysets, ks)
		}
		x.selKeyset = append(x.selKeyset, k)
	}
	return nil
}

// load reads each feature's records once and builds its timeline.
func (x *exporter) load(ctx context.Context, e *env, s historian.Storage) error {
	x.timelines = map[string]*historian.Timeline{}
	for _, hs := range x.sels {
		if x.timelines[hs.f.FQN] != nil {
			continue
		}
		start := time.Now()
		recs, err := historian.Load(ctx, s, hs.f.FQN, time.Time{}, time.Time{})
		if err != nil {
			return err
		}
		tl, err := historian.NewTimeline(hs.f, recs, historian.AsOfOptions{AsWritten: x.asWritten})
		if err != nil {
			return err
		}
		x.timelines[hs.f.FQN] = tl
		e.log.Info("history loaded", "feature", hs.f.FQN, "records", len(recs), "entities", tl.Entities(), "took", time.Since(start).Round(time.Millisecond))
	}
	x.local = map[string][]int32{}
	for k := range x.keysets {
		ks := &x.keysets[k]
		ks.ids = map[string]int32{}
		var fqns []string
		for i, hs := range x.sels {
			if x.selKeyset[i] == k && !slices.Contains(fqns, hs.f.FQN) {
				fqns = append(fqns, hs.f.FQN)
			}
		}
		for _, fqn := range fqns {
			for _, key := range x.timelines[fqn].EntityKeys() {
				if _, ok := ks.ids[key]; !ok {
					if len(ks.ids) == math.MaxInt32 {
						return fmt.Errorf("history: more than %d entities", math.MaxInt32)
					}
					ks.ids[key] = int32(len(ks.ids))
				}
			}
		}
		for _, fqn := range fqns {
			local := make([]int32, len(ks.ids))
			for i := range local {
				local[i] = -1
			}
			for i, key := range x.timelines[fqn].EntityKeys() {
				local[ks.ids[key]] = int32(i)
			}
			x.local[fqn] = local
		}
	}
	return nil
}

// write streams the entity rows through the join into out; it returns the rows written and
// how many values were found.
func (x *exporter) write(ctx context.Context, e *env, rd entityReader, out, format string) (rows, found int, err error) {
	var w io.Writer = e.stdout
	var tmp *os.File
	if out != "-" {
		if tmp, err = os.CreateTemp(filepath.Dir(out), ".osprey-export-*"); err != nil {
			return 0, 0, fmt.Errorf("--out %s: %w", out, err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		w = tmp
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var ew exportWriter
	if format == "csv" {
		ew, err = newCSVExport(bw, x)
	} else {
		ew, err = newParquetExport(bw, x, rd)
	}
	if err != nil {
		return 0, 0, err
	}
	vals := make([]engine.Value, len(x.sels))
	ids := make([]int32, len(x.keysets)) // the row's entity in each keyset, -1 for none
	for {
		if rows%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, 0, err
			}
		}
		row, err := rd.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, fmt.Errorf("entities %s: %w", x.path, err)
		}
		at, err := rd.instant(row, x.tsCol)
		if err != nil {
			return 0, 0, fmt.Errorf("entities %s: %s, column %s: %w", x.path, rd.where(), x.tsName, err)
		}
		for k := range x.keysets {
			ks := &x.keysets[k]
			for i, c := range ks.cols {
				if row.null[c] {
					return 0, 0, fmt.Errorf("entities %s: %s, column %s: null (a key of %s)", x.path, rd.where(), x.cols[c], x.selsOf(k))
				}
				ks.keys[ks.names[i]] = row.text[c]
			}
			ekeys, err := engine.EncodeKeys(ks.names, ks.keys)
			if err != nil {
				return 0, 0, fmt.Errorf("entities %s: %s: keys of %s: %w", x.path, rd.where(), x.selsOf(k), err)
			}
			id, ok := ks.ids[ekeys]
			if !ok {
				id = -1
			}
			ids[k] = id
		}
		for i, hs := range x.sels {
			entity := -1
			if id := ids[x.selKeyset[i]]; id >= 0 {
				entity = int(x.local[hs.f.FQN][id])
			}
			res, err := x.timelines[hs.f.FQN].AsOfEntity(entity, at, hs.sel)
			if err != nil {
				return 0, 0, fmt.Errorf("entities %s: %s: %s: %w", x.path, rd.where(), hs.text, err)
			}
			vals[i] = res.Value
			if res.Found() {
				found++
			}
		}
		if err := ew.write(row, vals); err != nil {
			return 0, 0, fmt.Errorf("--out %s: %w", out, err)
		}
		rows++
	}
	if err := ew.close(); err != nil {
		return 0, 0, fmt.Errorf("--out %s: %w", out, err)
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, fmt.Errorf("--out %s: %w", out, err)
	}
	if tmp != nil {
		if err := tmp.Close(); err != nil {
			return 0, 0, fmt.Errorf("--out %s: %w", out, err)
		}
		if err := os.Rename(tmp.Name(), out); err != nil {
			return 0, 0, fmt.Errorf("--out %s: %w", out, err)
		}
		tmp = nil
	}
	return rows, found, nil
}

// selsOf names the features reading keyset k.
func (x *exporter) selsOf(k int) string {
	var names []string
	for i, hs := range x.sels {
		if x.selKeyset[i] == k && !slices.Contains(names, hs.f.FQN) {
			names = append(names, hs.f.FQN)
		}
	}
	return strings.Join(names, ", ")
}

// entityRow is one row of the entity file.
type entityRow struct {
	// text is each column's value as text (a JSON value's text for JSON Lines), null whether
	// it is null.
	text []string
	null []bool
	// pq holds a Parquet file's values, one per column; nil for the other formats.
	pq []parquet.Value
	// json holds a JSON Lines row's values; nil for the other formats.
	json []json.RawMessage
}

// entityReader streams the rows of an entity file.
type entityReader interface {
	columns() []string
	// next returns the next row (valid until the following call), or io.EOF.
	next() (*entityRow, error)
	// where names the row next returned: "row 3" (counted from 1, the header not counted),
	// with its line for text formats.
	where() string
	// instant returns the row's instant from column col.
	instant(r *entityRow, col int) (time.Time, error)
	close() error
}

func openEntities(stdin io.Reader, path, format string) (entityReader, error) {
	if path == "-" {
		if format == "parquet" {
			return nil, errors.New("a Parquet entity file cannot be read from standard input (it needs random access)")
		}
		if format == "csv" {
			return newCSVEntities(stdin, nil)
		}
		return newJSONLEntities(stdin, nil)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var rd entityReader
	switch format {
	case "csv":
		rd, err = newCSVEntities(f, f)
	case "jsonl":
		rd, err = newJSONLEntities(f, f)
	default:
		rd, err = newParquetEntities(f)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return rd, nil
}

// textInstant parses a text instant: RFC 3339 or Unix seconds.
func textInstant(r *entityRow, col int) (time.Time, error) {
	if r.null[col] {
		return time.Time{}, errors.New("null, want a time")
	}
	return parseInstant(r.text[col])
}

// csvEntities reads a CSV file with a header row.
type csvEntities struct {
	r    *csv.Reader
	c    io.Closer
	cols []string
	row  int
	line int
	cur  entityRow
}

func newCSVEntities(r io.Reader, c io.Closer) (*csvEntities, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<16))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty: want a header row")
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	cols := slices.Clone(header)
	if len(cols) > 0 {
		cols[0] = strings.TrimPrefix(cols[0], "\ufeff")
	}
	return &csvEntities{r: cr, c: c, cols: cols, cur: entityRow{text: make([]string, len(cols)), null: make([]bool, len(cols))}}, nil
}

func (c *csvEntities) columns() []string { return c.cols }

func (c *csvEntities) next() (*entityRow, error) {
	rec, err := c.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("row %d: %w", c.row+1, err)
	}
	c.row++
	c.line, _ = c.r.FieldPos(0)
	copy(c.cur.text, rec) // csv.Reader checks that every record has the header's fields
	return &c.cur, nil
}

func (c *csvEntities) where() string { return fmt.Sprintf("row %d (line %d)", c.row, c.line) }

func (c *csvEntities) instant(r *entityRow, col int) (time.Time, error) { return textInstant(r, col) }

func (c *csvEntities) close() error {
	if c.c != nil {
		return c.c.Close()
	}
	return nil
}

// maxJSONLine bounds one line of a JSON Lines entity file.
const maxJSONLine = 16 << 20

// jsonlEntities reads JSON Lines: one object a line, blank lines skipped. The columns are the
// first object's fields, in its order; a later object may leave fields out (null) but not
// add any.
type jsonlEntities struct {
	sc    *bufio.Scanner
	c     io.Closer
	cols  []string
	index map[string]int
	first *entityRow // the first row, read to learn the columns
	row   int
	line  int
	cur   entityRow
}

func newJSONLEntities(r io.Reader, c io.Closer) (*jsonlEntities, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxJSONLine)
	j := &jsonlEntities{sc: sc, c: c, index: map[string]int{}}
	line, err := j.nextLine()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty: want at least one JSON object")
	}
	if err != nil {
		return nil, err
	}
	names, vals, err := jsonObject(line)
	if err != nil {
		return nil, fmt.Errorf("row 1 (line %d): %w", j.line, err)
	}
	j.cols = names
	for i, n := range names {
		j.index[n] = i
	}
	j.cur = entityRow{text: make([]string, len(names)), null: make([]bool, len(names)), json: make([]json.RawMessage, len(names))}
	for i, v := range vals {
		j.set(i, v)
	}
	j.first = &j.cur
	return j, nil
}

// nextLine returns the next non-blank line.
func (j *jsonlEntities) nextLine() ([]byte, error) {
	for j.sc.Scan() {
		j.line++
		if line := bytes.TrimSpace(j.sc.Bytes()); len(line) > 0 {
			return line, nil
		}
	}
	if err := j.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", j.line+1, maxJSONLine)
		}
		return nil, fmt.Errorf("line %d: %w", j.line+1, err)
	}
	return nil, io.EOF
}

func (j *jsonlEntities) set(i int, v json.RawMessage) {
	j.cur.json[i] = v
	j.cur.text[i], j.cur.null[i] = jsonText(v)
}

func (j *jsonlEntities) columns() []string { return j.cols }

func (j *jsonlEntities) next() (*entityRow, error) {
	if j.first != nil {
		j.first = nil
		j.row++
		return &j.cur, nil
	}
	line, err := j.nextLine()
	if err != nil {
		return nil, err
	}
	j.row++
	names, vals, err := jsonObject(line)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", j.where(), err)
	}
	for i := range j.cols {
		j.set(i, nil)
	}
	for k, n := range names {
		i, ok := j.index[n]
		if !ok {
			return nil, fmt.Errorf("%s: field %q is not among the first line's (%s)", j.where(), n, strings.Join(j.cols, ", "))
		}
		j.set(i, vals[k])
	}
	return &j.cur, nil
}

func (j *jsonlEntities) where() string { return fmt.Sprintf("row %d (line %d)", j.row, j.line) }

func (j *jsonlEntities) instant(r *entityRow, col int) (time.Time, error) {
	if v := r.json[col]; len(v) > 0 && (v[0] == '{' || v[0] == '[') {
		return time.Time{}, fmt.Errorf("%s is not a time (want RFC 3339 or Unix seconds)", clip(string(v)))
	}
	return textInstant(r, col)
}

func (j *jsonlEntities) close() error {
	if j.c != nil {
		return j.c.Close()
	}
	return nil
}

// jsonObject parses a JSON object, keeping its fields' order; a field given twice is an
// error.
func jsonObject(line []byte) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("not a JSON object")
	}
	var names []string
	var vals []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("not JSON: %w", err)
		}
		name, _ := tok.(string)
		if slices.Contains(names, name) {
			return nil, nil, fmt.Errorf("field %q appears twice", name)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("field %q: not JSON: %w", name, err)
		}
		names = append(names, name)
		vals = append(vals, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("not JSON: %w", err)
	}
	if dec.More() {
		return nil, nil, errors.New("more than one JSON value on the line")
	}
	return names, vals, nil
}

// jsonText returns a JSON value as text: a string's contents, null as null, anything else
// its JSON.
func jsonText(v json.RawMessage) (string, bool) {
	if len(v) == 0 || string(v) == "null" {
		return "", true
	}
	if v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s, false
		}
	}
	return string(v), false
}

// parquetEntities reads a Parquet file with a flat schema, one row group at a time.
type parquetEntities struct {
	file   *os.File
	pf     *parquet.File
	cols   []*parquet.Column
	names  []string
	groups []parquet.RowGroup
	g      int
	rows   parquet.Rows
	buf    []parquet.Row
	n, i   int
	row    int
	cur    entityRow
}

func newParquetEntities(f *os.File) (rd *parquetEntities, err error) {
	defer func() {
		if p := recover(); p != nil {
			rd, err = nil, fmt.Errorf("not a Parquet file, or a corrupt one: %v", p)
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("not a Parquet file, or a corrupt one: %w", err)
	}
	p := &parquetEntities{file: f, pf: pf, groups: pf.RowGroups(), buf: make([]parquet.Row, 256)}
	for i, c := range pf.Root().Columns() {
		if !c.Leaf() || c.Repeated() || c.Index() != i {
			return nil, fmt.Errorf("column %s is nested or repeated: only flat schemas are read (a column per key and the timestamp)", c.Name())
		}
		p.cols = append(p.cols, c)
		p.names = append(p.names, c.Name())
	}
	n := len(p.cols)
	p.cur = entityRow{text: make([]string, n), null: make([]bool, n), pq: make([]parquet.Value, n)}
	return p, nil
}

func (p *parquetEntities) columns() []string { return p.names }

func (p *parquetEntities) next() (r *entityRow, err error) {
	defer func() {
		if x := recover(); x != nil {
			r, err = nil, fmt.Errorf("row %d: corrupt Parquet data: %v", p.row+1, x)
		}
	}()
	for p.i >= p.n {
		if p.rows == nil {
			if p.g >= len(p.groups) {
				return nil, io.EOF
			}
			p.rows = p.groups[p.g].Rows()
			p.g++
		}
		n, err := p.rows.ReadRows(p.buf)
		p.n, p.i = n, 0
		if errors.Is(err, io.EOF) {
			p.rows.Close()
			p.rows = nil
		} else if err != nil {
			return nil, fmt.Errorf("row %d: %w", p.row+1, err)
		}
	}
	raw := p.buf[p.i]
	p.i++
	p.row++
	for c := range p.cur.pq {
		p.cur.pq[c] = parquet.NullValue()
	}
	for _, v := range raw {
		if c := v.Column(); c >= 0 && c < len(p.cur.pq) {
			p.cur.pq[c] = v
		}
	}
	for c, v := range p.cur.pq {
		p.cur.null[c] = v.IsNull()
		p.cur.text[c] = ""
		if !v.IsNull() {
			p.cur.text[c] = parquetText(p.cols[c], v)
		}
	}
	return &p.cur, nil
}

func (p *parquetEntities) where() string { return fmt.Sprintf("row %d", p.row) }

func (p *parquetEntities) instant(r *entityRow, col int) (time.Time, error) {
	v := r.pq[col]
	if v.IsNull() {
		return time.Time{}, errors.New("null, want a time")
	}
	var t time.Time
	c := p.cols[col]
	switch unit := parquetTimeUnit(c); {
	case v.Kind() == parquet.Int64 && unit != 0:
		t = unitTime(v.Int64(), unit)
	case v.Kind() == parquet.Int32 && parquetIsDate(c):
		t = time.Unix(int64(v.Int32())*86400, 0)
	case v.Kind() == parquet.Int96:
		t = int96Time(v)
	case v.Kind() == parquet.Int32:
		t = time.Unix(int64(v.Int32()), 0)
	case v.Kind() == parquet.Int64:
		if n := v.Int64(); n > 1<<40 || n < -(1<<40) {
			return time.Time{}, fmt.Errorf("%d is not Unix seconds of the years 1678 to 2262", n)
		}
		t = time.Unix(v.Int64(), 0)
	case v.Kind() == parquet.Double, v.Kind() == parquet.Float:
		return parseInstant(r.text[col])
	case v.Kind() == parquet.ByteArray:
		return parseInstant(r.text[col])
	default:
		return time.Time{}, fmt.Errorf("a %s column is not a time (want a timestamp, Unix seconds or RFC 3339 text)", p.cols[col].Type())
	}
	if t.Before(time.Unix(0, math.MinInt64)) || t.After(time.Unix(0, math.MaxInt64)) {
		return time.Time{}, fmt.Errorf("%s is outside the years 1678 to 2262", r.text[col])
	}
	return t.UTC(), nil
}

func (p *parquetEntities) close() error {
	if p.rows != nil {
		p.rows.Close()
	}
	return p.file.Close()
}

// parquetTimeUnit returns the unit of a timestamp column, 0 for a column of another type.
func parquetTimeUnit(c *parquet.Column) time.Duration {
	if lt := c.Type().LogicalType(); lt != nil {
		if ts, ok := lt.Value.(*format.TimestampType); ok && ts.Unit.Value != nil {
			return ts.Unit.Value.Duration()
		}
	}
	return 0
}

// parquetIsDate reports whether c is a DATE column (days since 1970-01-01).
func parquetIsDate(c *parquet.Column) bool {
	if lt := c.Type().LogicalType(); lt != nil {
		_, ok := lt.Value.(*format.DateType)
		return ok
	}
	return false
}

// unitTime is n units after the epoch.
func unitTime(n int64, unit time.Duration) time.Time {
	switch unit {
	case time.Millisecond:
		return time.UnixMilli(n)
	case time.Microsecond:
		return time.UnixMicro(n)
	}
	return time.Unix(0, n)
}

// int96Time converts a legacy INT96 timestamp: nanoseconds of the day, then the Julian day.
func int96Time(v parquet.Value) time.Time {
	i := v.Int96()
	nanos := int64(uint64(i[1])<<32 | uint64(i[0]))
	days := int64(i[2]) - 2440588 // the Julian day of 1970-01-01
	return time.Unix(days*86400, nanos).UTC()
}

// parquetText returns a Parquet value as text.
func parquetText(c *parquet.Column, v parquet.Value) string {
	switch v.Kind() {
	case parquet.Boolean:
		return strconv.FormatBool(v.Boolean())
	case parquet.Int32:
		if parquetIsDate(c) {
			return time.Unix(int64(v.Int32())*86400, 0).UTC().Format(time.DateOnly)
		}
		return strconv.FormatInt(int64(v.Int32()), 10)
	case parquet.Int64:
		if unit := parquetTimeUnit(c); unit != 0 {
			return unitTime(v.Int64(), unit).UTC().Format(time.RFC3339Nano)
		}
		return strconv.FormatInt(v.Int64(), 10)
	case parquet.Int96:
		return int96Time(v).Format(time.RFC3339Nano)
	case parquet.Float:
		return strconv.FormatFloat(float64(v.Float()), 'g', -1, 32)
	case parquet.Double:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64)
	}
	return string(v.ByteArray())
}

// exportWriter writes the joined rows.
type exportWriter interface {
	write(r *entityRow, vals []engine.Value) error
	close() error
}

// csvExport writes CSV: the entity columns as read, then the values (lists and windows as
// JSON, no value as an empty field).
type csvExport struct {
	w   *csv.Writer
	rec []string
}

func newCSVExport(w io.Writer, x *exporter) (*csvExport, error) {
	c := &csvExport{w: csv.NewWriter(w)}
	header := slices.Clone(x.cols)
	for _, hs := range x.sels {
		header = append(header, hs.text)
	}
	if err := c.w.Write(header); err != nil {
		return nil, err
	}
	c.rec = make([]string, len(header))
	return c, nil
}

func (c *csvExport) write(r *entityRow, vals []engine.Value) error {
	n := copy(c.rec, r.text)
	for i, v := range vals {
		s, err := csvValue(v)
		if err != nil {
			return err
		}
		c.rec[n+i] = s
	}
	return c.w.Write(c.rec)
}

func (c *csvExport) close() error {
	c.w.Flush()
	return c.w.Error()
}

// csvValue formats a value for CSV: scalars as text (timestamps RFC 3339), lists as JSON
// arrays, a window as a JSON object of its aggregations, Null as "".
func csvValue(v engine.Value) (string, error) {
	switch v.Kind() {
	case engine.KindNull:
		return "", nil
	case engine.KindInt:
		return strconv.FormatInt(v.Int(), 10), nil
	case engine.KindFloat:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), nil
	case engine.KindString:
		return v.Str(), nil
	case engine.KindBool:
		return strconv.FormatBool(v.Bool()), nil
	case engine.KindTimestamp:
		return v.Time().Format(time.RFC3339Nano), nil
	case engine.KindTimestampList:
		ts := v.Times()
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = t.UTC().Format(time.RFC3339Nano)
		}
		b, err := json.Marshal(out)
		return string(b), err
	}
	b, err := json.Marshal(v.Interface())
	return string(b), err
}

// parquetExport writes Parquet (zstd): the entity columns (a Parquet file's with their
// types, text ones as strings), then a column per selector typed by its primitive.
type parquetExport struct {
	w     *parquet.GenericWriter[any]
	x     *exporter
	pqIn  bool
	inDef []int // a Parquet input column's definition level when set: 1 optional, 0 required
	nIn   int
	start []int // the first leaf column of each selector's column
	rows  []parquet.Row
}

// parquetRowGroup bounds the rows of a row group the writer holds in memory.
const parquetRowGroup = 128 << 10

func newParquetExport(w io.Writer, x *exporter, rd entityReader) (*parquetExport, error) {
	p := &parquetExport{x: x, nIn: len(x.cols)}
	var group parquetgroup.Group
	if pr, ok := rd.(*parquetEntities); ok {
		p.pqIn = true
		for _, c := range pr.cols {
			node, def := parquet.Leaf(c.Type()), 0
			if c.Optional() {
				node, def = parquet.Optional(node), 1
			} else {
				node = parquet.Required(node)
			}
			p.inDef = append(p.inDef, def)
			group = append(group, parquetgroup.Field(c.Name(), node))
		}
	} else {
		for i, name := range x.cols {
			if name == "" {
				return nil, fmt.Errorf("entities %s: column %d has no name, which a Parquet column needs", x.path, i+1)
			}
			group = append(group, parquetgroup.Field(name, parquet.Optional(parquet.String())))
		}
	}
	leaf := p.nIn
	for _, hs := range x.sels {
		p.start = append(p.start, leaf)
		node, leaves := featureNode(hs)
		group = append(group, parquetgroup.Field(hs.text, node))
		leaf += leaves
	}
	schema := parquet.NewSchema("osprey_export", group)
	p.w = parquet.NewGenericWriter[any](w, schema, parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(parquetRowGroup),
		parquet.CreatedBy("osprey history export", buildVersion(), ""))
	return p, nil
}

// featureNode is the Parquet column of a selector's values and the number of its leaves.
func featureNode(hs historySelector) (parquet.Node, int) {
	f := hs.f
	if f.Windowed() {
		if hs.sel.Aggr != engine.AggrUnknown {
			return parquet.Optional(parquet.Leaf(parquet.DoubleType)), 1
		}
		var g parquetgroup.Group
		for _, a := range f.Aggrs.Fns() {
			g = append(g, parquetgroup.Field(a.String(), parquet.Required(parquet.Leaf(parquet.DoubleType))))
		}
		return parquet.Optional(g), len(g)
	}
	if f.Primitive.IsList() {
		return parquet.Optional(parquet.List(parquet.Required(primitiveNode(f.Primitive.Elem())))), 1
	}
	return parquet.Optional(primitiveNode(f.Primitive)), 1
}

func primitiveNode(p engine.Primitive) parquet.Node {
	switch p {
	case engine.PrimitiveInt:
		return parquet.Int(64)
	case engine.PrimitiveFloat:
		return parquet.Leaf(parquet.DoubleType)
	case engine.PrimitiveBool:
		return parquet.Leaf(parquet.BooleanType)
	case engine.PrimitiveTimestamp:
		return parquet.Timestamp(parquet.Nanosecond)
	}
	return parquet.String()
}

func (p *parquetExport) write(r *entityRow, vals []engine.Value) error {
	if len(p.rows) == cap(p.rows) && len(p.rows) > 0 {
		if err := p.flush(); err != nil {
			return err
		}
	}
	if p.rows == nil {
		p.rows = make([]parquet.Row, 0, 512)
	}
	p.rows = p.rows[:len(p.rows)+1]
	row := p.rows[len(p.rows)-1][:0]
	for c := 0; c < p.nIn; c++ {
		switch {
		case p.pqIn && r.pq[c].IsNull():
			row = append(row, parquet.NullValue().Level(0, 0, c))
		case p.pqIn:
			row = append(row, r.pq[c].Clone().Level(0, p.inDef[c], c))
		case r.null[c]:
			row = append(row, parquet.NullValue().Level(0, 0, c))
		default:
			row = append(row, parquet.ByteArrayValue([]byte(r.text[c])).Level(0, 1, c))
		}
	}
	for i, v := range vals {
		row = appendFeatureValue(row, p.start[i], p.x.sels[i], v)
	}
	p.rows[len(p.rows)-1] = row
	return nil
}

func (p *parquetExport) flush() error {
	_, err := p.w.WriteRows(p.rows)
	p.rows = p.rows[:0]
	return err
}

func (p *parquetExport) close() error {
	if len(p.rows) > 0 {
		if err := p.flush(); err != nil {
			return err
		}
	}
	return p.w.Close()
}

// appendFeatureValue appends a selector's value to a row, from leaf column col.
func appendFeatureValue(row parquet.Row, col int, hs historySelector, v engine.Value) parquet.Row {
	f := hs.f
	if f.Windowed() && hs.sel.Aggr == engine.AggrUnknown {
		fns := f.Aggrs.Fns()
		if v.IsNull() {
			for i := range fns {
				row = append(row, parquet.NullValue().Level(0, 0, col+i))
			}
			return row
		}
		r := v.Window()
		for i, a := range fns {
			row = append(row, parquet.DoubleValue(r.Get(a)).Level(0, 1, col+i))
		}
		return row
	}
	if v.IsNull() {
		return append(row, parquet.NullValue().Level(0, 0, col))
	}
	switch v.Kind() {
	case engine.KindInt:
		return append(row, parquet.Int64Value(v.Int()).Level(0, 1, col))
	case engine.KindFloat:
		return append(row, parquet.DoubleValue(v.Float()).Level(0, 1, col))
	case engine.KindString:
		return append(row, parquet.ByteArrayValue([]byte(v.Str())).Level(0, 1, col))
	case engine.KindBool:
		return append(row, parquet.BooleanValue(v.Bool()).Level(0, 1, col))
	case engine.KindTimestamp:
		return append(row, parquet.Int64Value(int64(v.Bits())).Level(0, 1, col))
	case engine.KindIntList:
		return appendParquetList(row, col, v.Ints(), parquet.Int64Value)
	case engine.KindFloatList:
		return appendParquetList(row, col, v.Floats(), parquet.DoubleValue)
	case engine.KindStringList:
		return appendParquetList(row, col, v.Strs(), func(s string) parquet.Value { return parquet.ByteArrayValue([]byte(s)) })
	case engine.KindBoolList:
		return appendParquetList(row, col, v.Bools(), parquet.BooleanValue)
	case engine.KindTimestampList:
		return appendParquetList(row, col, v.Times(), func(t time.Time) parquet.Value { return parquet.Int64Value(t.UnixNano()) })
	}
	return append(row, parquet.NullValue().Level(0, 0, col))
}

// appendParquetList appends an optional list of required elements: level 1 for an empty
// list, each element at level 2 (the first at repetition level 0, the others at 1).
func appendParquetList[T any](row parquet.Row, col int, elems []T, value func(T) parquet.Value) parquet.Row {
	if len(elems) == 0 {
		return append(row, parquet.NullValue().Level(0, 1, col))
	}
	for i, e := range elems {
		rep := 1
		if i == 0 {
			rep = 0
		}
		row = append(row, value(e).Level(rep, 2, col))
	}
	return row
}
