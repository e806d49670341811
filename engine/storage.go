package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// StorageSpec is one value of a feature program's address-scoped storage
// (spec.builder.storage): every invocation of the program for an address — the feature and
// one entity's keys — reads and writes its own copy, kept in the State.
type StorageSpec struct {
	// Name names the value: a ValidName, unique in the feature.
	Name string
	// Primitive is its type.
	Primitive Primitive
	// ExpireAfterWrite, when set, forgets the value this long after it was last written.
	ExpireAfterWrite time.Duration
	// ExpireAfterCall, when set, forgets it this long after the address was last invoked
	// (any invocation that committed, whether it read or wrote the value or not). At most
	// one of the two is set; neither: it is kept until cleared (or the feature deleted).
	ExpireAfterCall time.Duration
}

// Address is the scope of one invocation of a feature's program: the feature and the
// entity's keys.
type Address struct {
	FQN  string
	Keys Keys
}

// String returns the address as fqn{key=value,…}, the keys sorted.
func (a Address) String() string {
	names := slices.Sorted(maps.Keys(a.Keys))
	var b strings.Builder
	b.WriteString(a.FQN)
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + a.Keys[k])
	}
	b.WriteByte('}')
	return b.String()
}

// ErrConflict is returned by StorageState.CommitStorage when the address's storage changed
// since the snapshot the commit is based on (another invocation of the same address, here
// or on another replica, committed first). The engine then runs the invocation again.
var ErrConflict = errors.New("storage changed concurrently")

// ErrStorage: a program used its storage wrongly (a name its feature does not declare, a
// value of the wrong type, storage of an invocation whose address is not known).
var ErrStorage = errors.New("invalid storage use")

// StorageState is implemented by a State that keeps programs' address-scoped storage. The
// engine loads an address's storage when its program first touches it, and commits what
// the invocation changed together with the feature value it wrote, in one atomic step: both
// or neither.
type StorageState interface {
	// LoadStorage returns the live storage values of the address (f, keys) as of now —
	// values whose Expires has passed are left out — and the address's version.
	LoadStorage(ctx context.Context, f *Feature, keys string, now time.Time) (StorageSnapshot, error)
	// CommitStorage applies c to the address if its version is still c.Version, and returns
	// the new version and, when c.Write is set, what the write did (as Update reports it).
	// A version that moved is ErrConflict, with nothing applied.
	CommitStorage(ctx context.Context, f *Feature, keys string, c StorageCommit) (version string, w Written, err error)
}

// StorageSnapshot is an address's storage as loaded.
type StorageSnapshot struct {
	// Values are the live values by name.
	Values map[string]StoredValue
	// Version identifies the address's storage as loaded: opaque, different after every
	// commit; "" when nothing is stored (before the first commit, or once every value
	// expired or was cleared).
	Version string
}

// StoredValue is one storage value and when it expires (zero: never).
type StoredValue struct {
	Value   Value
	Expires time.Time
}

// StorageCommit is what an invocation changed in its address's storage, with the feature
// value it wrote.
type StorageCommit struct {
	// Version is the version the changes are based on.
	Version string
	// Set are the values written, with their expiry.
	Set map[string]StoredValue
	// Clear are the names cleared.
	Clear []string
	// Touch are the expireAfterCall values not written, with their new expiry.
	Touch map[string]time.Time
	// Write is the feature value the invocation wrote, applied as State.Update applies it,
	// in the same atomic step; nil: none.
	Write *StorageWrite
	// Send are the messages to enqueue in the address's mailbox (a MessageState's), in the
	// order sent: each gets the next ID; one with a Token replaces the pending message of
	// that token.
	Send []Envelope
	// Cancel are the tokens whose pending delayed messages are removed (before Send is
	// applied: a token cancelled and sent again in one invocation is pending).
	Cancel []string
	// Blind is set when the invocation neither read nor wrote its storage: the commit
	// applies without comparing or changing the version (Set, Clear and Touch are empty).
	Blind bool
	// MaxMailbox, when positive and Send is not empty, is the most messages the mailbox may
	// hold after the commit, pending and in flight (a send whose token replaces a pending
	// message adds none; a cancellation removes one): a commit that would leave more applies
	// nothing and fails with ErrMailboxFull.
	MaxMailbox int
}

// StorageWrite is the feature value an invocation writes with its storage.
type StorageWrite struct {
	Value     Value
	Timestamp time.Time
}

// Invocation is one run of a feature's program for an address, as its program sees its
// storage: reads come from the address's storage (loaded on the first) and the invocation's
// own writes; writes are kept here until the engine commits them with the invocation's
// value, after the program returned — a program that fails leaves no trace. An Invocation
// serves one program run at a time.
type Invocation struct {
	e   *Engine
	f   *Feature
	now time.Time

	// The address, worked out on first use (resolve) from the call's keys or its row.
	keys     Keys
	row      Row
	resolved bool
	addr     Address
	ekeys    string
	errKey   error // why the address is unknown, or nil

	loaded  bool
	snap    StorageSnapshot
	changed map[string]*Value // name → new value; a nil pointer: cleared
	order   []string          // the changed names, in the order first changed

	ts   time.Time // the call's timestamp, the event time of what it sends
	hops int       // the hops of the message it runs for; 0 for a row or a read
	msg  *Received // the message it runs for, or nil

	sends     []Envelope  // messages, timers and egress messages, in the order sent
	cancels   []string    // timer tokens cancelled
	budget    *sendBudget // what its request may still send (an Ingest's); nil: no request bound
	sentBytes int         // the bytes of its sends so far

	// prev is the invocation of the same address this one follows within one request (an
	// Ingest's earlier row of the entity), whose changes it sees and whose commit it
	// follows; committed is the version the commit left.
	prev      *Invocation
	committed string
}

// Address returns the invocation's address.
func (in *Invocation) Address() Address {
	in.resolve()
	return in.addr
}

// spec returns the storage spec of name.
func (in *Invocation) spec(name string) (*StorageSpec, error) {
	for i := range in.f.Storage {
		if in.f.Storage[i].Name == name {
			return &in.f.Storage[i], nil
		}
	}
	names := make([]string, len(in.f.Storage))
	for i, s := range in.f.Storage {
		names[i] = s.Name
	}
	return nil, fmt.Errorf("%w: %s declares no storage %q (spec.builder.storage has %v)", ErrStorage, in.f.FQN, name, names)
}

// load loads the address's storage the first time it is needed: from the invocation it
// follows when that one loaded it (its view, with its changes), else from the State.
func (in *Invocation) load(ctx context.Context) error {
	if in.loaded {
		return nil
	}
	in.resolve()
	if in.errKey != nil {
		return in.errKey
	}
	if p := in.loadedPrev(); p != nil {
		in.snap = StorageSnapshot{Values: p.view()}
		in.loaded = true
		return nil
	}
	st := in.e.storage
	if st == nil {
		return fmt.Errorf("%w: the state provider keeps no program storage", ErrUnsupported)
	}
	snap, err := st.LoadStorage(ctx, in.f, in.ekeys, in.now)
	if err != nil {
		return fmt.Errorf("storage of %s: %w", in.addr, err)
	}
	in.snap, in.loaded = snap, true
	return nil
}

// Storage returns the value of the storage name: found is false when it is not set (never
// written, cleared, or expired).
func (in *Invocation) Storage(ctx context.Context, name string) (v Value, found bool, err error) {
	if _, err := in.spec(name); err != nil {
		return Null, false, err
	}
	if c, ok := in.changed[name]; ok {
		if c == nil {
			return Null, false, nil
		}
		return *c, true, nil
	}
	if err := in.load(ctx); err != nil {
		return Null, false, err
	}
	sv, ok := in.snap.Values[name]
	return sv.Value, ok, nil
}

// SetStorage sets the storage name to v, converted to its declared type.
func (in *Invocation) SetStorage(ctx context.Context, name string, v Value) error {
	s, err := in.spec(name)
	if err != nil {
		return err
	}
	if v.IsNull() {
		return in.ClearStorage(ctx, name)
	}
	cv, err := Convert(s.Primitive, v)
	if err != nil {
		return fmt.Errorf("%w: storage %q of %s is %s: %w", ErrStorage, name, in.f.FQN, s.Primitive, err)
	}
	if err := in.load(ctx); err != nil {
		return err
	}
	in.change(name, &cv)
	return nil
}

// ClearStorage clears the storage name.
func (in *Invocation) ClearStorage(ctx context.Context, name string) error {
	if _, err := in.spec(name); err != nil {
		return err
	}
	if err := in.load(ctx); err != nil {
		return err
	}
	in.change(name, nil)
	return nil
}

func (in *Invocation) change(name string, v *Value) {
	if in.changed == nil {
		in.changed = map[string]*Value{}
	}
	if _, ok := in.changed[name]; !ok {
		in.order = append(in.order, name)
	}
	in.changed[name] = v
}

// view returns the storage as the invocation leaves it: the loaded values with its changes.
func (in *Invocation) view() map[string]StoredValue {
	out := make(map[string]StoredValue, len(in.snap.Values)+len(in.changed))
	for k, v := range in.snap.Values {
		out[k] = v
	}
	for _, name := range in.order {
		if v := in.changed[name]; v != nil {
			s, _ := in.spec(name)
			out[name] = StoredValue{Value: *v, Expires: s.expiry(in.now)}
		} else {
			delete(out, name)
		}
	}
	return out
}

// baseVersion is the version the invocation's commit expects: its snapshot's, or, when it
// follows another one's view, the version that one's commit left.
func (in *Invocation) baseVersion() string {
	if p := in.loadedPrev(); p != nil {
		return p.committed
	}
	return in.snap.Version
}

// loadedPrev returns the latest invocation this one follows that loaded the storage (an
// earlier row of the entity that only sent messages did not), or nil.
func (in *Invocation) loadedPrev() *Invocation {
	for p := in.prev; p != nil; p = p.prev {
		if p.loaded {
			return p
		}
	}
	return nil
}

// commit returns what to commit: the changes, and the expireAfterCall values touched (every
// one the address has, since the address was invoked). It reports whether there is anything
// to commit besides the write: a program that never touched its storage commits none.
func (in *Invocation) commit(w *StorageWrite) (StorageCommit, bool) {
	in.shareBudget()
	c := StorageCommit{Version: in.baseVersion(), Write: w, Send: in.sends, Cancel: in.cancels}
	if len(in.sends) > 0 {
		c.MaxMailbox = in.e.maxMailbox
	}
	if !in.loaded {
		c.Blind = true
		return c, len(in.sends) > 0 || len(in.cancels) > 0
	}
	for _, name := range in.order {
		s, _ := in.spec(name)
		if v := in.changed[name]; v != nil {
			if c.Set == nil {
				c.Set = map[string]StoredValue{}
			}
			c.Set[name] = StoredValue{Value: *v, Expires: s.expiry(in.now)}
		} else {
			c.Clear = append(c.Clear, name)
		}
	}
	for _, s := range in.f.Storage {
		if s.ExpireAfterCall <= 0 {
			continue
		}
		if _, changed := in.changed[s.Name]; changed {
			continue
		}
		if _, ok := in.snap.Values[s.Name]; ok {
			if c.Touch == nil {
				c.Touch = map[string]time.Time{}
			}
			c.Touch[s.Name] = in.now.Add(s.ExpireAfterCall)
		}
	}
	return c, true
}

// expiry returns when a value written at now expires (zero: never).
func (s *StorageSpec) expiry(now time.Time) time.Time {
	switch {
	case s.ExpireAfterWrite > 0:
		return now.Add(s.ExpireAfterWrite)
	case s.ExpireAfterCall > 0:
		return now.Add(s.ExpireAfterCall)
	}
	return time.Time{}
}

// newInvocation returns the invocation of f's program for the entity keys (the call's keys,
// or else those its row carries under the feature's key names), following prev (an earlier
// invocation of the same address in the same request, or nil), or nil when f has no
// storage.
func (e *Engine) newInvocation(f *Feature, call *ProgramCall, prev *Invocation) *Invocation {
	if len(f.Storage) == 0 && e.messages == nil {
		return nil
	}
	// Expiry runs on the engine's clock (when the invocation runs), not the row's event time.
	in := &Invocation{e: e, f: f, now: e.now(), prev: prev, ts: call.Timestamp, msg: call.Message, keys: call.Keys, row: call.Row}
	if in.msg != nil {
		in.hops = in.msg.Hops
	}
	return in
}

// resolve works out the invocation's address — the call's keys, or those its row carries
// under the feature's key names — the first time something needs it: most invocations of a
// feature without storage never send, and never pay for it.
func (in *Invocation) resolve() {
	if in.resolved {
		return
	}
	in.resolved = true
	keys := in.keys
	if keys == nil && in.row != nil {
		keys = keysFromRow(in.f, in.row)
	}
	in.addr = Address{FQN: in.f.FQN, Keys: keys}
	ekeys, err := EncodeKeys(in.f.Keys, keys)
	if err != nil {
		in.errKey = fmt.Errorf("%w: the invocation's address is not known (storage is per entity: %w)", ErrStorage, err)
	}
	in.ekeys = ekeys
}

// maxConflictRetries bounds how often an invocation runs again after ErrConflict.
const maxConflictRetries = 8

// commitStorage commits an invocation that wrote no value: its storage changes alone.
func (e *Engine) commitStorage(ctx context.Context, in *Invocation) error {
	c, ok := in.commit(nil)
	if !ok {
		return nil
	}
	v, _, err := e.storage.CommitStorage(ctx, in.f, in.ekeys, c)
	if err != nil {
		return fmt.Errorf("storage of %s: %w", in.addr, err)
	}
	in.committed = v
	in.sent()
	return nil
}

// effects reports whether the invocation leaves anything to commit besides its value: its
// storage, or messages.
func (in *Invocation) effects() bool {
	return in != nil && (in.loaded || len(in.sends) > 0 || len(in.cancels) > 0)
}

// sent tells the dispatcher that a commit enqueued messages.
func (in *Invocation) sent() {
	if len(in.sends) > 0 {
		in.e.dispatch.poke()
	}
}

// addressKey identifies an invocation's address within a request.
func (in *Invocation) addressKey() string {
	in.resolve()
	return in.f.FQN + "\x00" + in.ekeys
}

// changes lists what the invocation changed, in the order first changed.
func (in *Invocation) changes() []StorageChange {
	var out []StorageChange
	for _, name := range in.order {
		c := StorageChange{Name: name}
		if v := in.changed[name]; v != nil {
			s, _ := in.spec(name)
			c.Value, c.Expires = *v, s.expiry(in.now)
		}
		out = append(out, c)
	}
	return out
}
