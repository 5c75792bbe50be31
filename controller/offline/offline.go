// Package offline is kluisd's offline code cache: the verification material
// the backend syncs to a device (wire code_sync commands) so that a citizen
// can collect a document while the backend is out of reach.
//
// The cache never holds a plain code. Per document it holds:
//
//   - QRHash: pickupcode.QRHash, base64url(SHA-256(code id)) of the QR
//     token's code id. A scanned token is first checked with the backend's
//     Ed25519 public key (pickupcode.VerifyToken: signature, device,
//     expiry); its code id is then looked up here to find the compartment.
//     A forged token fails the signature, so the hash only binds token to
//     document.
//   - PINHash: "argon2id$<params>$<salt>$<verifier>" (pickupcode.FormatPINHash,
//     salt and verifier base64url) as backend/codes' offline bundle makes
//     it, checked with pickupcode.VerifyOffline; SecondFactor says the
//     verifier includes the date of birth.
//
// The cache is a JSON file replaced atomically (write, fsync, rename, fsync
// directory) on every sync, so a power cut leaves the old or the new
// version, never a mix. Single use and lockout are the daemon's business
// (journaled), not the cache's.
//
// The file does not hold the entries themselves but the code_sync commands
// they come from, as the backend signed them for this device (wire.Command
// with its KC1 signature: the last full sync and the partial ones applied
// since), and Open checks every signature again with the backend's public
// key before it uses an entry: someone who can write the device's disk
// cannot add an entry whose PIN hash they chose, move one to another
// compartment or change a device id, without the backend's private key. A
// file that fails the check (tampered, signed with another key or for
// another device, or the unsigned cache of kluisd before 2026-12-07) is
// moved aside and refused as a whole (ErrUntrusted): no entry of it opens a
// door offline until the backend's next full sync. What the file holds
// besides the signed syncs is the device's own record and can only refuse
// a code, never accept one: the withdrawn entries (ErrWithdrawn) and the
// expired ones (answered "expired", not "wrong"). kluisd's journal keeps
// the version of the last sync applied (Floor: an older file put back is
// refused) and every withdrawal (SetRecorder, KeepWithdrawn: one deleted
// from the file is made again).
package offline

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// FileName is the cache file inside the daemon's state directory.
const FileName = "offline-cache.json"

// Errors Verify returns (besides those of controller/pickupcode, which it
// wraps: pickupcode.ErrWrongCode, ErrExpired, ErrSecondFactorRequired,
// ErrWrongDevice).
var (
	// ErrNoMaterial means the cache cannot decide (no public key, empty).
	ErrNoMaterial = errors.New("offline: no verification material")
	// ErrStale means a sync older than the cache's version was ignored.
	ErrStale = errors.New("offline: stale code sync")
	// ErrWithdrawn means the attempt matched a code this device withdrew
	// itself (Forget): its compartment was emptied, reloaded or opened
	// outside a pickup of its document here, so the device no longer
	// knows that document to be in it. The Match names the code. The door
	// stays shut offline; online the backend decides.
	ErrWithdrawn = errors.New("offline: code withdrawn by the device: its compartment changed here")
	// ErrDamaged means Open found the cache file damaged (not JSON of a
	// cache): it was moved aside and the cache starts empty.
	ErrDamaged = errors.New("offline: cache damaged")
	// ErrUntrusted means the cache file's entries are not authenticated:
	// they are not all the backend's signed code syncs for this device
	// (Open), or the cache refuses every code until the backend's next
	// full sync because of that (VerifyQR, VerifyPIN), or it refuses a
	// partial sync until then (ApplyAt; kluisd answers it rejected, and
	// the backend sends its whole bundle).
	ErrUntrusted = errors.New("offline: cache not authenticated by the backend's signature")
	// ErrNotSigned means ApplyAt was given a command that is not a
	// code_sync the backend signed for this device.
	ErrNotSigned = errors.New("offline: not a code sync signed by the backend for this device")
)

// MaxPartialSyncs bounds the partial (not full) code syncs the file keeps
// after the last full one; past it a partial sync is refused with
// ErrUntrusted until a full one comes (kluis-backend sends full ones only).
const MaxPartialSyncs = 64

// Match is a successful offline verification (or, with an error, what is
// known of the attempt: its PINTag, and the entry of an expired code).
type Match struct {
	DocumentID string
	Addr       wire.Address
	Slot       *int
	Method     wire.Method
	Expires    time.Time
	// Key identifies the cache entry (the code), whatever form was used.
	Key string
	// CodeRef is the entry's qr_hash (pickupcode.QRHash of the code id):
	// it names the code to the backend without revealing anything.
	CodeRef string
	// NeedsDOB: the entry's verifier includes the date of birth.
	NeedsDOB bool
	// PINTag tags the PIN of a PIN attempt (pickupcode.OfflineCheck),
	// also when it matched nothing.
	PINTag string
}

// EntryKey identifies an entry (a code): the SHA-256 of its document and
// hashes, base64url, 16 characters.
func EntryKey(e wire.CodeEntry) string {
	h := sha256.Sum256([]byte(e.DocumentID + "|" + e.QRHash + "|" + e.PINHash))
	return base64.RawURLEncoding.EncodeToString(h[:12])
}

func match(e wire.CodeEntry, m wire.Method) Match {
	return Match{DocumentID: e.DocumentID, Addr: e.Addr, Method: m, Expires: e.Expires, Key: EntryKey(e),
		CodeRef: e.QRHash, NeedsDOB: e.SecondFactor}
}

// file is the cache: on disk (see disk) and in memory, where Entries are
// the entries of Syncs not withdrawn.
type file struct {
	Version int64 `json:"version"`
	// Syncs are the code_sync commands the entries come from, signed by
	// the backend for this device: the last full one and the partial ones
	// applied after it, in order.
	Syncs []wire.Command `json:"syncs,omitempty"`
	// Entries are derived from Syncs: never written (kluisd before
	// 2026-12-07 wrote them, unsigned).
	Entries []wire.CodeEntry `json:"-"`
	// Expired are entries a sync removed after their expiry, kept for
	// ExpiredRetention so that their PIN answers "expired", not "wrong"
	// (docs/kluisd.md, "Offline verification").
	Expired []wire.CodeEntry `json:"expired,omitempty"`
	// Withdrawn are entries Forget took out: the device saw their
	// compartment emptied, reloaded or opened outside a pickup of their
	// document. A later sync carrying the same entry (same document,
	// qr_hash and PIN hash) does not bring it back: the device's own
	// record wins until the entry expires (a re-issued code is a new
	// entry). Their codes answer ErrWithdrawn offline.
	Withdrawn []wire.CodeEntry `json:"withdrawn,omitempty"`
	// Untrusted, when not empty, says why the cache refuses every code
	// until the backend's next full sync (ErrUntrusted).
	Untrusted string `json:"untrusted,omitempty"`
	// WithdrawSynced: the cache file was found damaged, and with it the
	// withdrawn entries were lost, which the backend does not know of and
	// sends again. Every entry of the syncs applied while it is set is
	// withdrawn (any of them may have been); the next full sync clears it.
	// Codes issued after that open offline again.
	WithdrawSynced bool `json:"withdraw_synced,omitempty"`
	// Pending are the withdrawals made while Untrusted (the entries
	// unknown): the next full sync's entries they match are withdrawn.
	Pending []withdrawal `json:"pending_withdrawals,omitempty"`
}

// withdrawal is what Forget, ForgetAll or WithdrawAll takes out: the
// entries at Addrs (at any address when All), but document Keep's.
type withdrawal struct {
	All   bool           `json:"all,omitempty"`
	Addrs []wire.Address `json:"addrs,omitempty"`
	Keep  string         `json:"keep,omitempty"`
}

func (w withdrawal) matches(e wire.CodeEntry) bool {
	if w.Keep != "" && e.DocumentID == w.Keep {
		return false
	}
	return w.All || slices.Contains(w.Addrs, e.Addr)
}

// fileFormat is the format of the files Open trusts: the signed syncs
// (format 1, kluisd before 2026-12-07, held unsigned entries).
const fileFormat = 2

// disk is the cache file's layout.
type disk struct {
	Format int `json:"format,omitempty"`
	file
	// OldEntries are the unsigned entries of a format 1 file (or entries
	// someone added to a format 2 one): read, never trusted.
	OldEntries []wire.CodeEntry `json:"entries,omitempty"`
}

// ExpiredRetention is how long after its expiry a code removed from the
// cache is still recognised offline (and answered "expired").
const ExpiredRetention = 60 * 24 * time.Hour

// Cache is the offline code cache. Safe for concurrent use.
type Cache struct {
	path     string
	deviceID string
	pub      ed25519.PublicKey

	mu sync.Mutex
	f  file
	// floor is the version of the last sync this device applied, as its
	// journal keeps it (Floor): no older file nor sync is taken.
	floor int64
	// record journals the entries a withdrawal takes out before the
	// file says so (SetRecorder); journaled are the keys the journal
	// holds (KeepWithdrawn): withdrawn whatever the file says.
	record    func([]WithdrawnKey) error
	journaled map[string]bool
}

// WithdrawnKey names a withdrawn entry as kluisd's journal keeps it: its
// EntryKey and its expiry (the journal keeps it until ExpiredRetention
// after).
type WithdrawnKey struct {
	Key     string    `json:"key"`
	Expires time.Time `json:"expires"`
}

func withdrawnKeys(es []wire.CodeEntry) []WithdrawnKey {
	out := make([]WithdrawnKey, 0, len(es))
	for _, e := range es {
		out = append(out, WithdrawnKey{Key: EntryKey(e), Expires: e.Expires})
	}
	return out
}

// SetRecorder has record called with the entries every withdrawal (Forget,
// ForgetAll, WithdrawAll, or a sync's entries withdrawn on the device's
// word) takes out, before the file is written; its error fails the
// withdrawal. The withdrawn list in the file is the device's own record
// and no signature covers it: deleting an entry from it let that genuine
// code open its compartment offline again, which may hold another
// document since. kluisd journals what record gets and gives it back at
// the next start (KeepWithdrawn).
func (c *Cache) SetRecorder(record func([]WithdrawnKey) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record = record
}

// KeepWithdrawn makes the entries keys name withdrawn, whatever the file
// says, now and in every later sync: kluisd gives it the withdrawals its
// journal holds at start. An entry of the file's syncs among them that
// the file does not list as withdrawn (deleted from the list, or a power
// cut between the journal's record and the file's write) is withdrawn
// again, durably; KeepWithdrawn returns how many.
func (c *Cache) KeepWithdrawn(keys []WithdrawnKey) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.journaled = map[string]bool{}
	for _, k := range keys {
		c.journaled[k.Key] = true
	}
	return c.withdrawLocked(func(e wire.CodeEntry) bool { return c.journaled[EntryKey(e)] }, false)
}

// Open loads the cache from dir (an absent file is an empty cache) and
// checks that its entries are the backend's code syncs signed for deviceID
// with pub. pub may be nil: QR codes then cannot be verified offline, and a
// cache holding syncs is not trusted. A file that fails the check is moved
// aside (offline-cache.json.bad-N) and the cache refuses every code until
// the next full sync (ErrUntrusted, with the cause), keeping the file's
// withdrawn and expired entries, which only refuse codes; its version is
// 0, so the next sync is not refused as stale and the heartbeat's
// cache_version tells the backend to send the whole bundle. A damaged file
// is ErrDamaged.
func Open(dir, deviceID string, pub ed25519.PublicKey) (*Cache, error) {
	c := &Cache{path: filepath.Join(dir, FileName), deviceID: deviceID, pub: pub}
	b, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("offline: %w", err)
	}
	var d disk
	if err := json.Unmarshal(b, &d); err != nil {
		// A damaged cache is not fatal: the device verifies online and
		// the next full sync replaces it. It is kept aside for
		// forensics, not overwritten by that sync.
		// Its withdrawn entries are lost: the syncs up to the next
		// full one are withdrawn (WithdrawSynced), a mark made durable
		// at once, so that a restart before the sync keeps it.
		c.f = file{WithdrawSynced: true}
		bad, merr := moveAside(c.path)
		if merr != nil {
			return c, fmt.Errorf("offline: damaged cache ignored (%v), and not moved aside: %w: %w", err, merr, ErrDamaged)
		}
		if serr := c.save(c.f); serr != nil {
			return c, fmt.Errorf("offline: damaged cache ignored (%v), moved to %s; its withdrawals kept in memory only: %w: %w", err, filepath.Base(bad), serr, ErrDamaged)
		}
		return c, fmt.Errorf("offline: damaged cache ignored (%v), moved to %s: %w", err, filepath.Base(bad), ErrDamaged)
	}
	c.f = d.file
	if d.Format == fileFormat && d.Untrusted != "" {
		// Refused at an earlier start (and moved aside then), no full
		// sync since.
		c.f = file{Expired: d.Expired, Withdrawn: d.Withdrawn, Untrusted: d.Untrusted, WithdrawSynced: d.WithdrawSynced,
			Pending: d.Pending}
		return c, fmt.Errorf("offline: %s (found at an earlier start); no offline code until the backend's next full sync: %w", d.Untrusted, ErrUntrusted)
	}
	if why := c.authenticate(d); why != "" {
		return c, c.refuse(why)
	}
	return c, nil
}

// authenticate checks d (c.f holds its file) and derives c.f's entries
// from its signed syncs; it returns why d is not trusted, or "".
func (c *Cache) authenticate(d disk) string {
	switch {
	case d.Format != fileFormat:
		if len(d.OldEntries) == 0 && d.Version == 0 && len(d.Syncs) == 0 {
			return "" // nothing to trust
		}
		return fmt.Sprintf("format %d, not signed (kluisd before 2026-12-07 wrote its entries unsigned)", max(d.Format, 1))
	case len(d.OldEntries) > 0:
		return "entries outside the backend's signed code syncs"
	case len(d.Syncs) > 0 && len(c.pub) != ed25519.PublicKeySize:
		return "no public key to check its code syncs with (offline.public_key_file)"
	case len(d.Syncs) > MaxPartialSyncs+1:
		return fmt.Sprintf("%d code syncs kept, at most %d", len(d.Syncs), MaxPartialSyncs+1)
	}
	var entries []wire.CodeEntry
	var version int64
	for i, cmd := range d.Syncs {
		if err := c.checkSync(cmd); err != nil {
			return fmt.Sprintf("code sync %d of %d: %v", i+1, len(d.Syncs), err)
		}
		if cmd.Codes.Version <= version {
			return fmt.Sprintf("code sync %d of %d: version %d after %d", i+1, len(d.Syncs), cmd.Codes.Version, version)
		}
		if i > 0 && cmd.Codes.Full {
			return fmt.Sprintf("code sync %d of %d: a full sync after the first", i+1, len(d.Syncs))
		}
		version = cmd.Codes.Version
		entries = applied(entries, *cmd.Codes)
	}
	if version != d.Version {
		return fmt.Sprintf("version %d, its code syncs' %d", d.Version, version)
	}
	withdrawn := map[string]bool{}
	for _, e := range d.Withdrawn {
		withdrawn[EntryKey(e)] = true
	}
	c.f.Entries = nil
	for _, e := range entries {
		if !withdrawn[EntryKey(e)] {
			c.f.Entries = append(c.f.Entries, e)
		}
	}
	return ""
}

// checkSync checks that cmd is a code sync the backend signed for this
// device (whenever: a kept sync expired long ago).
func (c *Cache) checkSync(cmd wire.Command) error {
	if cmd.Kind != wire.CmdCodeSync || cmd.Codes == nil {
		return fmt.Errorf("a %q command, not a code sync: %w", cmd.Kind, ErrNotSigned)
	}
	if err := cmd.Validate(); err != nil {
		return fmt.Errorf("%v: %w", err, ErrNotSigned)
	}
	if err := wire.VerifyCommandSignature(c.pub, c.deviceID, cmd); err != nil {
		return fmt.Errorf("%v: %w", err, ErrNotSigned)
	}
	return nil
}

// applied returns entries with the sync s applied: a full sync replaces
// them; otherwise its entries replace those of their documents and revoke
// removes documents.
func applied(entries []wire.CodeEntry, s wire.CodeSync) []wire.CodeEntry {
	var out []wire.CodeEntry
	if !s.Full {
		drop := map[string]bool{}
		for _, id := range s.Revoke {
			drop[id] = true
		}
		for _, e := range s.Entries {
			drop[e.DocumentID] = true // replaced
		}
		for _, e := range entries {
			if !drop[e.DocumentID] {
				out = append(out, e)
			}
		}
	}
	revoked := map[string]bool{}
	for _, id := range s.Revoke {
		revoked[id] = true
	}
	for _, e := range s.Entries {
		if !revoked[e.DocumentID] {
			out = append(out, e)
		}
	}
	return out
}

// refuse makes c refuse every code until the next full sync because of
// why: the file is moved aside for forensics and the device's own records
// (withdrawn and expired entries) are written again, with the reason, so
// that a restart refuses too. The error wraps ErrUntrusted.
func (c *Cache) refuse(why string) error {
	c.f = file{Expired: c.f.Expired, Withdrawn: c.f.Withdrawn, Untrusted: why, WithdrawSynced: c.f.WithdrawSynced, Pending: c.f.Pending}
	bad, err := moveAside(c.path)
	if err != nil {
		return fmt.Errorf("offline: %s, and not moved aside (%v); no offline code until the backend's next full sync: %w", why, err, ErrUntrusted)
	}
	if err := c.save(c.f); err != nil {
		return fmt.Errorf("offline: %s, moved to %s (not saved again: %v); no offline code until the backend's next full sync: %w",
			why, filepath.Base(bad), err, ErrUntrusted)
	}
	return fmt.Errorf("offline: %s, moved to %s; no offline code until the backend's next full sync: %w", why, filepath.Base(bad), ErrUntrusted)
}

// moveAside renames path to the first free path.bad-N and makes the rename
// durable.
func moveAside(path string) (string, error) {
	for n := 1; n < 1000; n++ {
		bad := fmt.Sprintf("%s.bad-%d", path, n)
		if _, err := os.Lstat(bad); err == nil {
			continue
		}
		if err := os.Rename(path, bad); err != nil {
			return "", err
		}
		d, err := os.Open(filepath.Dir(path))
		if err != nil {
			return bad, err
		}
		defer d.Close()
		return bad, d.Sync()
	}
	return "", errors.New("999 damaged copies kept already")
}

// Floor tells the cache the version of the last code sync this device
// applied, which kluisd keeps in its journal (a high-water mark the cache
// file cannot lower): a file holding syncs older than it is an older copy
// put back (a backup, someone's own copy: signed by the backend all the
// same, but superseded, bringing back codes revoked since) and is refused
// as Open refuses a tampered one (moved aside, ErrUntrusted, every code
// refused until the next full sync), and ApplyAt takes no sync of that
// version or older (ErrStale), also while the refused cache's own version
// is 0. A file with no sync (absent, or damaged and started empty) holds
// nothing to refuse.
func (c *Cache) Floor(version int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.floor = max(c.floor, version)
	if c.f.Untrusted != "" || len(c.f.Syncs) == 0 || c.f.Version >= c.floor {
		return nil
	}
	return c.refuse(fmt.Sprintf("version %d, older than version %d, the last this device applied (its journal): an older copy put back",
		c.f.Version, c.floor))
}

// Len returns the number of valid entries (not the expired ones kept).
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.f.Entries)
}

// Version returns the version of the last sync applied.
func (c *Cache) Version() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.f.Version
}

// Apply applies a code sync command durably at the current time (see
// ApplyAt).
func (c *Cache) Apply(cmd wire.Command) error { return c.ApplyAt(cmd, time.Now()) }

// ApplyAt applies the code sync of cmd durably, keeping the command: cmd
// must be a code_sync the backend signed for this device (checked again
// here, ErrNotSigned; its validity period is the caller's business,
// wire.VerifyCommand). A sync whose version is not newer than the cache's
// is ignored with ErrStale; a partial one while the cache refuses codes,
// or after MaxPartialSyncs, with ErrUntrusted. A full sync ends the
// refusal. An entry the sync removes (or
// replaces) whose expiry has passed at now is kept aside as expired for
// ExpiredRetention, so that its PIN is still recognised (the backend drops
// expired codes from the bundle; a citizen who comes late is told
// "expired", as online, and not counted as a guesser). An entry removed
// before its expiry (revoked, used, re-issued) is forgotten.
func (c *Cache) ApplyAt(cmd wire.Command, now time.Time) error {
	if err := c.checkSync(cmd); err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	s := *cmd.Codes
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Version <= c.f.Version {
		return fmt.Errorf("offline: version %d <= %d: %w", s.Version, c.f.Version, ErrStale)
	}
	if s.Version <= c.floor {
		return fmt.Errorf("offline: version %d <= %d, the last this device applied: %w", s.Version, c.floor, ErrStale)
	}
	next := file{Version: s.Version, Withdrawn: withdrawnAt(c.f.Withdrawn, now), Syncs: []wire.Command{cmd},
		WithdrawSynced: c.f.WithdrawSynced && !s.Full}
	if !s.Full {
		if c.f.Untrusted != "" {
			return fmt.Errorf("offline: a partial sync (%s): %w", c.f.Untrusted, ErrUntrusted)
		}
		if len(c.f.Syncs) > MaxPartialSyncs {
			return fmt.Errorf("offline: a partial sync after %d: a full one is needed: %w", len(c.f.Syncs)-1, ErrUntrusted)
		}
		next.Syncs = append(append([]wire.Command(nil), c.f.Syncs...), cmd)
	}
	withdrawn := map[string]bool{}
	for _, e := range next.Withdrawn {
		withdrawn[EntryKey(e)] = true
	}
	var fresh []wire.CodeEntry
	for _, e := range applied(c.f.Entries, s) {
		switch k := EntryKey(e); {
		case withdrawn[k]:
		case c.journaled[k]: // the journal's word, whatever the file said
			withdrawn[k] = true
			next.Withdrawn = append(next.Withdrawn, e)
		case c.f.WithdrawSynced, // may have been withdrawn before the damage
			slices.ContainsFunc(c.f.Pending, func(w withdrawal) bool { return w.matches(e) }): // withdrawn while the file was refused
			withdrawn[k] = true
			next.Withdrawn = append(next.Withdrawn, e)
			fresh = append(fresh, e)
		default:
			next.Entries = append(next.Entries, e)
		}
	}
	next.Expired = expiredAfter(c.f, next.Entries, now)
	if err := c.recordLocked(fresh); err != nil {
		return err
	}
	if err := c.save(next); err != nil {
		return err
	}
	c.f = next
	return nil
}

// Forget withdraws the entries of compartment addr (as in CodeEntry.Addr)
// except those of document keep ("" withdraws them all), durably, and
// returns how many it withdrew. The cache keeps its version. kluisd calls
// it when staff emptied (retrieved) or loaded a compartment at this device,
// and when the compartment's door opened or its item changed outside a
// pickup (a remote open, a test-open, a forced door): the backend revokes
// the codes of a retrieved document, and a document loaded in its place
// means any other document's code for that compartment is stale, but the
// backend's sync saying so may not arrive before the network goes; until
// it does, such a code would open a compartment that may now hold someone
// else's document. Withdrawn entries stay withdrawn (a later sync holding
// the same entry does not bring it back) until ExpiredRetention after
// their expiry, and their codes answer ErrWithdrawn.
func (c *Cache) Forget(addr wire.Address, keep string) (int, error) {
	return c.forget(withdrawal{Addrs: []wire.Address{addr}, Keep: keep})
}

// ForgetAll withdraws every entry at any of addrs (Forget with no document
// kept) in one durable write: an automaton's forced hatch withdraws the
// codes of all its slots without a save per slot.
func (c *Cache) ForgetAll(addrs []wire.Address) (int, error) {
	return c.forget(withdrawal{Addrs: slices.Clone(addrs)})
}

// WithdrawAll withdraws every entry, at whatever address (one the
// configuration no longer has included), in one durable write: a damaged
// journal may have lost the single-use mark of any of them.
func (c *Cache) WithdrawAll() (int, error) {
	return c.forget(withdrawal{All: true})
}

// forget withdraws the entries w matches. While the cache refuses its
// file (its entries unknown), w is kept, durably, for the next full sync's
// entries, and forget returns 0.
func (c *Cache) forget(w withdrawal) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := file{Version: c.f.Version, Syncs: c.f.Syncs, Expired: c.f.Expired, Withdrawn: c.f.Withdrawn, Untrusted: c.f.Untrusted,
		WithdrawSynced: c.f.WithdrawSynced}
	if c.f.Untrusted != "" {
		next.Pending = append(slices.Clone(c.f.Pending), w)
		if err := c.save(next); err != nil {
			return 0, err
		}
		c.f = next
		return 0, nil
	}
	return c.withdrawLocked(w.matches, true)
}

// withdrawLocked moves the entries take matches to the withdrawn ones,
// durably, handing them to the recorder first when record (c.mu held),
// and returns how many.
func (c *Cache) withdrawLocked(take func(wire.CodeEntry) bool, record bool) (int, error) {
	next := file{Version: c.f.Version, Syncs: c.f.Syncs, Expired: c.f.Expired, Untrusted: c.f.Untrusted,
		WithdrawSynced: c.f.WithdrawSynced, Pending: c.f.Pending}
	have := map[string]bool{}
	for _, e := range c.f.Withdrawn {
		have[EntryKey(e)] = true
	}
	next.Withdrawn = slices.Clone(c.f.Withdrawn)
	for _, e := range c.f.Entries {
		if take(e) {
			if k := EntryKey(e); !have[k] {
				have[k] = true
				next.Withdrawn = append(next.Withdrawn, e)
			}
			continue
		}
		next.Entries = append(next.Entries, e)
	}
	n := len(c.f.Entries) - len(next.Entries)
	if n == 0 {
		return 0, nil
	}
	if record {
		if err := c.recordLocked(next.Withdrawn[len(c.f.Withdrawn):]); err != nil {
			return 0, err
		}
	}
	if err := c.save(next); err != nil {
		return 0, err
	}
	c.f = next
	return n, nil
}

// recordLocked hands the entries a withdrawal takes out to the recorder
// (SetRecorder), before the file is written (c.mu held).
func (c *Cache) recordLocked(es []wire.CodeEntry) error {
	if c.record == nil || len(es) == 0 {
		return nil
	}
	if err := c.record(withdrawnKeys(es)); err != nil {
		return fmt.Errorf("offline: withdrawal not journaled: %w", err)
	}
	for _, e := range es {
		if c.journaled == nil {
			c.journaled = map[string]bool{}
		}
		c.journaled[EntryKey(e)] = true
	}
	return nil
}

// withdrawnAt returns the withdrawn entries still kept at now: until
// ExpiredRetention after their expiry.
func withdrawnAt(w []wire.CodeEntry, now time.Time) []wire.CodeEntry {
	var out []wire.CodeEntry
	for _, e := range w {
		if now.Sub(e.Expires) <= ExpiredRetention {
			out = append(out, e)
		}
	}
	return out
}

// expiredAfter returns the expired entries to keep once the cache's entries
// become next: the old expired ones within the retention, plus the old
// entries no longer in next whose expiry passed, without duplicates.
func expiredAfter(old file, next []wire.CodeEntry, now time.Time) []wire.CodeEntry {
	live := map[string]bool{}
	for _, e := range next {
		live[EntryKey(e)] = true
	}
	seen := map[string]bool{}
	var out []wire.CodeEntry
	add := func(e wire.CodeEntry) {
		k := EntryKey(e)
		if live[k] || seen[k] || e.PINHash == "" || now.Sub(e.Expires) > ExpiredRetention {
			return
		}
		seen[k] = true
		out = append(out, e)
	}
	for _, e := range old.Expired {
		add(e)
	}
	for _, e := range old.Entries {
		if !now.Before(e.Expires) {
			add(e)
		}
	}
	return out
}

func (c *Cache) save(f file) error {
	b, err := json.Marshal(disk{Format: fileFormat, file: f})
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	tmp := c.path + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	_, err = out.Write(b)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("offline: save: %w", err)
	}
	d, err := os.Open(filepath.Dir(c.path))
	if err != nil {
		return fmt.Errorf("offline: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("offline: fsync dir: %w", err)
	}
	return nil
}

// VerifyQR checks a scanned token offline.
func (c *Cache) VerifyQR(token string, now time.Time) (Match, error) {
	if len(c.pub) != ed25519.PublicKeySize {
		return Match{}, fmt.Errorf("offline: no public key for QR tokens: %w", ErrNoMaterial)
	}
	cl, err := pickupcode.VerifyToken(c.pub, token, c.deviceID, now)
	if err != nil {
		return Match{}, fmt.Errorf("offline: %w", err)
	}
	h := pickupcode.QRHash(cl.CodeID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f.Untrusted != "" {
		return Match{}, fmt.Errorf("offline: %s: %w", c.f.Untrusted, ErrUntrusted)
	}
	for _, e := range c.f.Entries {
		if e.QRHash != "" && e.QRHash == h {
			if !now.Before(e.Expires) {
				return match(e, wire.MethodQR), fmt.Errorf("offline: %w", pickupcode.ErrExpired)
			}
			return match(e, wire.MethodQR), nil
		}
	}
	for _, e := range c.f.Withdrawn {
		if e.QRHash != "" && e.QRHash == h {
			return match(e, wire.MethodQR), fmt.Errorf("offline: %w", ErrWithdrawn)
		}
	}
	// A genuine token whose code is not in the cache: revoked, used or
	// not yet synced. Keep the door shut.
	return Match{}, fmt.Errorf("offline: token not in cache: %w", pickupcode.ErrWrongCode)
}

// VerifyPIN checks a PIN and date of birth offline (two argon2id hashes at
// most, whatever the number of entries). The Match carries the PIN's tag
// also with an error.
func (c *Cache) VerifyPIN(pin, birthDate string, now time.Time) (Match, error) {
	c.mu.Lock()
	if c.f.Untrusted != "" {
		defer c.mu.Unlock()
		return Match{Method: wire.MethodPIN}, fmt.Errorf("offline: %s: %w", c.f.Untrusted, ErrUntrusted)
	}
	var entries []pickupcode.OfflineEntry
	byDoc := map[string]wire.CodeEntry{}
	// Valid entries first: a PIN drawn again for a new code finds the new
	// code, not the expired or withdrawn one.
	withdrawn := map[string]bool{}
	for _, e := range c.f.Withdrawn {
		withdrawn[EntryKey(e)] = true
	}
	all := append(append([]wire.CodeEntry(nil), c.f.Entries...), c.f.Withdrawn...)
	for _, e := range append(all, c.f.Expired...) {
		p, salt, verifier, err := pickupcode.ParsePINHash(e.PINHash)
		if err != nil {
			continue
		}
		key := EntryKey(e)
		entries = append(entries, pickupcode.OfflineEntry{DocumentID: key, ExpiresAt: e.Expires,
			Board: e.Addr.Board, Channel: e.Addr.Channel, NeedsDOB: e.SecondFactor,
			Salt: salt, Params: p, Verifier: verifier})
		if _, dup := byDoc[key]; !dup {
			byDoc[key] = e
		}
	}
	c.mu.Unlock()
	if len(entries) == 0 {
		return Match{}, fmt.Errorf("offline: no PIN material: %w", ErrNoMaterial)
	}
	chk, err := pickupcode.CheckOffline(entries, pickupcode.OfflineAttempt{DeviceID: c.deviceID, PIN: pin, BirthDate: birthDate}, now)
	m := Match{PINTag: chk.PINTag, Method: wire.MethodPIN}
	// (OfflineEntry.DocumentID holds the entry's key here.)
	if e, ok := byDoc[chk.Entry.DocumentID]; ok && chk.Entry.DocumentID != "" {
		m = match(e, wire.MethodPIN)
		m.PINTag = chk.PINTag
		if withdrawn[chk.Entry.DocumentID] && (err == nil || errors.Is(err, pickupcode.ErrExpired)) {
			return m, fmt.Errorf("offline: %w", ErrWithdrawn)
		}
	}
	if err != nil {
		return m, fmt.Errorf("offline: %w", err)
	}
	return m, nil
}
