package journal

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Record types the journal itself interprets.
const (
	TypeMeta      = "meta"
	TypeEvent     = "event"
	TypeAck       = "ack"
	TypeIntent    = "intent"
	TypeDone      = "done"
	TypeUncertain = "uncertain" // an intent resolved as "maybe pulsed"
	TypeEnd       = "end"       // the operation an intent served is over
)

// FileName is the journal's name inside its directory.
const FileName = "journal.log"

// DamageName is the marker file of a damage not yet settled: written and
// fsynced (with its directory) before the damaged records are cut from the
// journal, removed by SettleDamage once the caller's response to the damage
// (kluisd: withdrawing the offline codes) is itself durable. While it is
// there every Open reports Recovery.Unsettled, so a power cut between the
// cut and that response does not leave a clean-looking journal.
const DamageName = "journal.damaged"

// MaxRecord is the largest record accepted (bytes of JSON).
const MaxRecord = 64 << 10

// ErrClosed is returned after Close.
var ErrClosed = errors.New("journal: closed")

// Event is something kluisd reports to the backend. It is journaled before it
// is published and stays in the outbox until acknowledged.
type Event struct {
	// ID is unique and never reused; when empty Append fills in
	// "{device}-{seq}", but callers normally set a UUID (wire.NewID).
	ID string `json:"id"`
	// Kind names what happened, e.g. "collected" or "alarm".
	Kind string    `json:"kind"`
	At   time.Time `json:"at"`
	// Payload is what is published: the encoded wire event (never a PIN
	// or secret). Its id must equal ID.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Intent is a pulse about to be sent.
type Intent struct {
	// ID is the hardware command id of the pulse.
	ID          uint32 `json:"id"`
	Compartment int    `json:"compartment"`
	Board       int    `json:"board"`
	Channel     int    `json:"channel"`
	// Slot is the carousel slot of an automaton's Present, -1 for a pulse.
	Slot int `json:"slot"`
	// Purpose is pickup, load, retrieve or test.
	Purpose string `json:"purpose"`
	// Ref is the code or document reference the pulse serves (a code id,
	// never the code itself).
	Ref string `json:"ref,omitempty"`
	// Offline is true when the code was verified offline. An offline
	// pickup's intent is also the code's single-use mark: the code counts
	// as spent from this record on (the daemon's later marks say
	// otherwise), so spending the code and journaling the pulse take one
	// fdatasync.
	Offline bool `json:"offline,omitempty"`
	// CodeRef names the code an offline pickup used (its qr_hash).
	CodeRef string `json:"code_ref,omitempty"`
	// Method (qr, pin), Staff (staff id) and Command (remote command id)
	// let a restarted daemon report the operation's outcome completely.
	Method  string `json:"method,omitempty"`
	Staff   string `json:"staff,omitempty"`
	Command string `json:"command,omitempty"`
	// Boot is the board's boot id when the intent was journaled (drivers
	// implementing hardware.BootBinder), 0 when not known: a re-send after
	// a restart goes only to that boot (firmware-protocol.md 4.3.1).
	Boot uint32 `json:"boot,omitempty"`
}

// Record is one line of the journal.
type Record struct {
	Seq  uint64    `json:"seq"`
	Type string    `json:"type"`
	At   time.Time `json:"at"`
	// ID is the event id (ack) or the pulse id as text (done, uncertain).
	ID     string  `json:"id,omitempty"`
	Event  *Event  `json:"event,omitempty"`
	Intent *Intent `json:"intent,omitempty"`
	// NextSeq is carried by meta records.
	NextSeq uint64 `json:"next_seq,omitempty"`
	// Data is the payload of caller-defined types.
	Data json.RawMessage `json:"data,omitempty"`
}

// Recovery reports what Open found.
type Recovery struct {
	// Records read.
	Records int
	// TornBytes dropped from a torn last record.
	TornBytes int64
	// Corrupt is true when a damaged record was found before the end; the
	// rest of the file was moved to BadFile.
	Corrupt bool
	BadFile string
	// Unsettled is true when this Open found damage (Corrupt) or an
	// earlier one did and SettleDamage was not called since (the marker
	// DamageName is there; BadFile then names the file it recorded).
	Unsettled bool
}

// Damage says what start-up found damaged, "" when nothing (or the damage
// is settled).
func (r Recovery) Damage() string {
	switch {
	case r.Corrupt:
		return "damaged journal record: the records after it were moved to " + filepath.Base(r.BadFile)
	case r.Unsettled && r.BadFile != "":
		return "damaged journal record found at an earlier start, not yet settled: the records after it were moved to " + filepath.Base(r.BadFile)
	case r.Unsettled:
		return "damaged journal record found at an earlier start, not yet settled"
	}
	return ""
}

// Options configure Open.
type Options struct {
	// Dir holds the journal; created when missing.
	Dir string
	// DeviceID prefixes event ids.
	DeviceID string
	// Clock stamps records; default time.Now.
	Clock func() time.Time
	// Keep says whether a caller-defined record survives compaction;
	// default keep none.
	Keep func(Record) bool
	// Logger; default slog.Default().
	Logger *slog.Logger
	// SyncDir fsyncs a directory (after creating the journal, after a
	// compaction's rename, after moving a damaged tail aside); default an
	// fsync of the opened directory. Tests inject failures through it.
	SyncDir func(dir string) error
	// Write writes a record's line to the journal file; default f.Write.
	// Tests inject a full disk (ENOSPC) through it.
	Write func(f *os.File, line []byte) (int, error)
	// Reserve is the disk space, in bytes, the journal keeps in
	// ReserveName for the records it must not lose when the disk is full
	// (see "A full disk" in doc.go); 0 means DefaultReserve, a negative
	// value none (a full disk then only fails appends).
	Reserve int64
	// Allocate gives the reserve file its disk space; default fallocate
	// (zeros written where it is not supported). Tests inject a full
	// disk through it.
	Allocate func(f *os.File, size int64) error
	// Urgent says whether events of a kind go ahead of the others
	// (OutboxNext): kluisd's alarms. Default none. It only orders the
	// in-memory index; what is written is the same.
	Urgent func(kind string) bool
}

// Journal is the append-only record file. Safe for concurrent use.
type Journal struct {
	o    Options
	log  *slog.Logger
	path string

	mu   sync.Mutex
	cond *sync.Cond // on mu: an fdatasync ended (for quiesceLocked)
	// writeErrs counts the writes and fdatasyncs that failed
	// (WriteErrors).
	writeErrs uint64
	f         *os.File
	// size is what was written to f; durable is the part of it a
	// completed fsync covers (see "Group commit" in doc.go).
	size, durable int64
	// inflight fdatasyncs run outside mu, each on its own descriptor
	// from syncFiles (see syncLocked); covered is the furthest offset one
	// of them (or a completed one) covers in this generation; pending are
	// the records written but not yet durable, in file order. gen changes
	// when a failed fdatasync cuts the file back: a sync of an earlier
	// generation proves nothing.
	inflight  int
	syncs     uint64 // fdatasyncs of appends so far (Syncs)
	covered   int64
	gen       uint64
	syncFiles []*os.File
	pending   []*waiter
	nextSeq   uint64
	records   []Record // every live record, in order (replayed + appended)
	acked     map[string]bool
	done      map[string]bool // done or uncertain
	unsure    map[string]bool // uncertain
	ended     map[string]bool
	events    map[string]bool // event ids present
	// outbox indexes the unacknowledged events (see outboxIndex).
	outbox outboxIndex
	// results are the command results held until acknowledged, by
	// command id (results.go).
	results map[string]*Result
	closed  bool
	wake    chan struct{}
	// dirDirty: a compaction renamed the file but the directory's fsync
	// failed; appends sync the directory first (else a power cut could
	// bring back the old file and lose them).
	dirDirty bool
	// reserve is the reserve's size (0: none); low is true while it is
	// not held (space.go), lowUsed counts the bytes appended since, and
	// spaceWake is closed when low changes.
	reserve   int64
	low       bool
	lowUsed   int64
	lowCause  error  // why low (SpaceState.Cause)
	releases  uint64 // times the reserve was given up
	spaceWake chan struct{}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Open opens or creates the journal in o.Dir and replays it.
func Open(o Options) (*Journal, []Record, Recovery, error) {
	if o.Dir == "" {
		return nil, nil, Recovery{}, errors.New("journal: no directory")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Keep == nil {
		o.Keep = func(Record) bool { return false }
	}
	if o.SyncDir == nil {
		o.SyncDir = syncDir
	}
	if o.Write == nil {
		o.Write = (*os.File).Write
	}
	if o.Reserve == 0 {
		o.Reserve = DefaultReserve
	}
	if o.Allocate == nil {
		o.Allocate = allocate
	}
	if o.Urgent == nil {
		o.Urgent = func(string) bool { return false }
	}
	j := &Journal{o: o, log: o.Logger.With("part", "journal"), path: filepath.Join(o.Dir, FileName),
		nextSeq: 1, acked: map[string]bool{}, done: map[string]bool{}, unsure: map[string]bool{}, ended: map[string]bool{}, events: map[string]bool{}, wake: make(chan struct{}),
		reserve: max(o.Reserve, 0), spaceWake: make(chan struct{}), outbox: newOutboxIndex(), results: map[string]*Result{}}
	j.cond = sync.NewCond(&j.mu)
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, nil, Recovery{}, fmt.Errorf("journal: %w", err)
	}
	_, statErr := os.Stat(j.path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, Recovery{}, fmt.Errorf("journal: %w", err)
	}
	if created {
		if err := o.SyncDir(o.Dir); err != nil {
			f.Close()
			return nil, nil, Recovery{}, err
		}
	}
	recs, good, rec, err := j.read(f)
	if err != nil {
		f.Close()
		return nil, nil, rec, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, rec, fmt.Errorf("journal: %w", err)
	}
	if good < st.Size() {
		if rec.Corrupt {
			rec.BadFile, err = j.saveBad(f, good)
			if err != nil && isNoSpace(err) && j.freeReserve() {
				// A full disk: the reserve left by the last run is for
				// what must be kept, this copy too (the journal then
				// opens low, as it cannot make the reserve again).
				rec.BadFile, err = j.saveBad(f, good)
			}
			if err != nil {
				f.Close()
				return nil, nil, rec, err
			}
			// Durably before the cut: a power cut after it must not
			// leave a clean-looking journal (see DamageName).
			if err := j.markDamaged(rec.BadFile); err != nil {
				f.Close()
				return nil, nil, rec, err
			}
		} else {
			rec.TornBytes = st.Size() - good
		}
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, nil, rec, fmt.Errorf("journal: truncate torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, rec, fmt.Errorf("journal: fsync: %w", err)
		}
		j.log.Warn("journal tail dropped", "bytes", st.Size()-good, "corrupt", rec.Corrupt)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, rec, fmt.Errorf("journal: %w", err)
	}
	if rec.Corrupt {
		rec.Unsettled = true
	} else if b, err := os.ReadFile(filepath.Join(o.Dir, DamageName)); err == nil {
		rec.Unsettled, rec.BadFile = true, strings.TrimSpace(string(b))
		j.log.Error("journal damage found at an earlier start not yet settled", "file", rec.BadFile)
	} else if !errors.Is(err, os.ErrNotExist) {
		// Unreadable marker: in doubt, the damage is not settled.
		rec.Unsettled = true
		j.log.Error("journal damage marker unreadable: taken as not settled", "err", err)
	}
	j.f, j.size, j.durable, j.covered = f, good, good, good
	for _, r := range recs {
		j.apply(r)
	}
	rec.Records = len(recs)
	if j.reserve > 0 {
		// After the journal is read (and a torn tail cut, which can only
		// free room): a disk too full for the reserve still lets the
		// daemon start, finish what the journal says is unfinished and
		// raise its alarm, but no new door operation starts.
		if err := j.makeReserve(); err != nil {
			j.low, j.lowCause = true, err
			if isNoSpace(err) {
				j.log.Error("journal: no room for the reserve: no new door operation until there is", "reserve_bytes", j.reserve, "err", err)
			} else {
				j.log.Error("journal: the reserve could not be made (not a full disk): no new door operation until it is", "reserve_bytes", j.reserve, "err", err)
			}
		}
	}
	return j, recs, rec, nil
}

// read parses whole, CRC-correct lines and returns them with the offset of
// the end of the last good one.
func (j *Journal) read(f *os.File) ([]Record, int64, Recovery, error) {
	var rec Recovery
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, rec, fmt.Errorf("journal: %w", err)
	}
	br := bufio.NewReaderSize(f, 2*MaxRecord)
	var recs []Record
	var off int64
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Longer than any record we write: damage. Treat as the
			// end, corrupt unless nothing follows.
			rec.Corrupt = true
			return recs, off, rec, nil
		}
		if errors.Is(err, io.EOF) {
			// len(line) > 0 means a torn last line (no newline).
			return recs, off, rec, nil
		}
		if err != nil {
			return nil, 0, rec, fmt.Errorf("journal: read: %w", err)
		}
		r, ok := decodeLine(line)
		if !ok {
			// Bad line: torn if it is the last thing in the file.
			if _, perr := br.Peek(1); errors.Is(perr, io.EOF) {
				return recs, off, rec, nil
			}
			rec.Corrupt = true
			return recs, off, rec, nil
		}
		recs = append(recs, r)
		off += int64(len(line))
	}
}

func decodeLine(line []byte) (Record, bool) {
	var r Record
	if len(line) < 11 || line[8] != ' ' || line[len(line)-1] != '\n' {
		return r, false
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], line[:8]); err != nil {
		return r, false
	}
	body := line[9 : len(line)-1]
	want := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
	if crc32.Checksum(body, castagnoli) != want {
		return r, false
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Type == "" {
		return r, false
	}
	return r, true
}

func encodeLine(r Record) ([]byte, error) {
	body, err := encodeBody(r)
	if err != nil {
		return nil, err
	}
	return frame(body), nil
}

// encodeBody is r's JSON text.
func encodeBody(r Record) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("journal: encode: %w", err)
	}
	if len(body) > MaxRecord {
		return nil, fmt.Errorf("journal: record of %d bytes exceeds %d", len(body), MaxRecord)
	}
	return body, nil
}

// frame makes the journal line of a JSON text: CRC, space, text, newline.
func frame(body []byte) []byte {
	out := make([]byte, 0, len(body)+10)
	out = fmt.Appendf(out, "%08x ", crc32.Checksum(body, castagnoli))
	out = append(out, body...)
	return append(out, '\n')
}

// seqZero starts the JSON text of a record numbered 0 (Seq is the first
// field of Record).
var seqZero = []byte(`{"seq":0,`)

// withSeq returns body, encoded with Seq 0, as if encoded with seq.
func withSeq(body []byte, seq uint64) []byte {
	out := make([]byte, 0, len(body)+20)
	out = append(out, `{"seq":`...)
	out = strconv.AppendUint(out, seq, 10)
	return append(out, body[len(seqZero)-1:]...)
}

// saveBad copies f from offset from (a damaged tail) to a journal.log.bad-N
// file, made durable with its name, and returns its path. A crash after
// the copy began but before the tail was cut from the journal (or before
// the cut was durable) finds the same tail at the next Open: the copy that
// crash left (whole or cut short, a prefix of the tail) is written again
// instead of adding another, so repeated crashes there keep one copy, not
// one per start, each as large as the tail.
func (j *Journal) saveBad(f *os.File, from int64) (string, error) {
	var free string
	p := ""
	for n := 1; n < 1000 && p == ""; n++ {
		c := fmt.Sprintf("%s.bad-%d", j.path, n)
		st, err := os.Lstat(c)
		if err != nil {
			if free == "" {
				free = c
			}
			continue
		}
		// Only a regular file is written again (never through a link).
		if st.Mode().IsRegular() && isPrefix(c, io.NewSectionReader(f, from, 1<<40)) {
			p = c
		}
	}
	flag := os.O_WRONLY | os.O_TRUNC
	if p == "" {
		if free == "" {
			return "", errors.New("journal: too many damaged-tail files")
		}
		p, flag = free, os.O_WRONLY|os.O_CREATE|os.O_EXCL
	}
	out, err := os.OpenFile(p, flag, 0o600)
	if err != nil {
		return "", fmt.Errorf("journal: save damaged tail: %w", err)
	}
	_, err = io.Copy(out, io.NewSectionReader(f, from, 1<<40))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("journal: save damaged tail: %w", err)
	}
	return p, j.o.SyncDir(j.o.Dir)
}

// isPrefix reports whether the regular file at path holds the first bytes
// of tail (all of them, or fewer: a copy a crash cut short).
func isPrefix(path string, tail io.Reader) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(f, a)
		if n > 0 {
			m, _ := io.ReadFull(tail, b[:n])
			if m < n || !bytes.Equal(a[:n], b[:n]) {
				return false
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// markDamaged writes the marker DamageName naming bad, fsynced with its
// directory.
func (j *Journal) markDamaged(bad string) error {
	p := filepath.Join(j.o.Dir, DamageName)
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("journal: mark damage: %w", err)
	}
	_, err = out.Write([]byte(filepath.Base(bad) + "\n"))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: mark damage: %w", err)
	}
	return j.o.SyncDir(j.o.Dir)
}

// SettleDamage removes the marker of a damage (Recovery.Unsettled) durably;
// call it only once the response to the damage is durable. Without a
// marker it does nothing.
func (j *Journal) SettleDamage() error {
	err := os.Remove(filepath.Join(j.o.Dir, DamageName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("journal: settle damage: %w", err)
	}
	return j.o.SyncDir(j.o.Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: fsync dir: %w", err)
	}
	return nil
}

// apply updates the in-memory view. j.mu held (or not yet shared).
func (j *Journal) apply(r Record) {
	if r.Seq >= j.nextSeq {
		j.nextSeq = r.Seq + 1
	}
	switch r.Type {
	case TypeMeta:
		if r.NextSeq > j.nextSeq {
			j.nextSeq = r.NextSeq
		}
		return
	case TypeAck:
		j.acked[r.ID] = true
		j.outbox.remove(r.ID)
		delete(j.results, r.ID)
	case TypeResult:
		j.applyResult(r)
	case TypeDone, TypeUncertain:
		j.done[r.ID] = true
		if r.Type == TypeUncertain {
			j.unsure[r.ID] = true
		}
	case TypeEnd:
		j.ended[r.ID] = true
	case TypeEvent:
		if r.Event != nil {
			j.events[r.Event.ID] = true
			if !j.acked[r.Event.ID] {
				j.outbox.add(r.Seq, *r.Event, j.o.Urgent(r.Event.Kind))
			}
		}
	}
	j.records = append(j.records, r)
}

// Append writes r durably (write + fdatasync) and returns it with Seq and At
// set. Concurrent appends share their fdatasyncs (group commit): each
// returns once an fdatasync that began after its write has completed.
func (j *Journal) Append(r Record) (Record, error) {
	if r.Type == "" {
		return r, errors.New("journal: record without type")
	}
	// Encoded before taking the lock (with Seq 0, numbered under the
	// lock), unless the text depends on the sequence number.
	var pre []byte
	if !(r.Type == TypeEvent && r.Event != nil && r.Event.ID == "") {
		if r.At.IsZero() {
			r.At = j.o.Clock().UTC()
		}
		r.Seq = 0
		body, err := encodeBody(r)
		if err != nil {
			return r, err
		}
		if bytes.HasPrefix(body, seqZero) {
			pre = body
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.appendRoomLocked(r, pre)
}

// appendRoomLocked writes r (pre as for writeLocked) and waits until it is
// durable. When the disk is full it gives up the reserve (once) and writes
// r again in the room that made: a record that failed was cut off (write)
// or never applied (fdatasync), so writing it again doubles nothing. j.mu
// held.
func (j *Journal) appendRoomLocked(r Record, pre []byte) (Record, error) {
	releases := j.releases
	out, err := j.appendOnceLocked(r, pre)
	// A failed fdatasync fails every writer it covered: the first one
	// gives the reserve up, each of them writes again.
	if err != nil && isNoSpace(err) && (j.releaseLocked(err) || j.releases != releases) {
		out, err = j.appendOnceLocked(r, pre)
	}
	return out, err
}

// appendOnceLocked writes r and waits until it is durable. j.mu held.
func (j *Journal) appendOnceLocked(r Record, pre []byte) (Record, error) {
	w, err := j.writeLocked(r, pre)
	if err != nil {
		return r, err
	}
	j.waitLocked(w)
	return w.r, w.err
}

// waiter is an append written to the file and waiting to be durable.
type waiter struct {
	r   Record
	end int64 // file offset after its line
	// done is set (under mu) once the record is durable and applied, or
	// err says why it is not and never will be; ready is closed then.
	done  bool
	err   error
	ready chan struct{}
}

// finish marks w done with err (nil: durable). j.mu held.
func (w *waiter) finish(err error) {
	w.err, w.done = err, true
	close(w.ready)
}

// appendLocked writes r, then waits (releasing mu while an fdatasync runs)
// until it is durable. j.mu held.
func (j *Journal) appendLocked(r Record) (Record, error) {
	return j.appendRoomLocked(r, nil)
}

// writeLocked numbers r, writes its line after the records already written
// (durable or not) and queues it for the next fdatasync. pre, when not nil,
// is r's JSON text encoded with Seq 0 (and r.At set). j.mu held.
func (j *Journal) writeLocked(r Record, pre []byte) (*waiter, error) {
	if j.closed {
		return nil, ErrClosed
	}
	if r.Type == "" {
		return nil, errors.New("journal: record without type")
	}
	r.Seq = j.nextSeq
	if r.At.IsZero() {
		r.At = j.o.Clock().UTC()
	}
	if r.Type == TypeEvent && r.Event != nil && r.Event.ID == "" {
		r.Event.ID = fmt.Sprintf("%s-%d", j.o.DeviceID, r.Seq)
	}
	var line []byte
	if pre != nil {
		line = frame(withSeq(pre, r.Seq))
	} else {
		var err error
		if line, err = encodeLine(r); err != nil {
			return nil, err
		}
	}
	if _, err := j.o.Write(j.f, line); err != nil {
		j.writeErrs++
		// A partial write is a torn tail: cut it off so the next
		// append starts on a clean line (the lines written before it
		// stay; their fdatasync is still to come).
		_ = j.f.Truncate(j.size)
		_, _ = j.f.Seek(j.size, io.SeekStart)
		return nil, fmt.Errorf("journal: write: %w", err)
	}
	j.nextSeq = r.Seq + 1
	j.size += int64(len(line))
	if j.low {
		j.lowUsed += int64(len(line))
	}
	w := &waiter{r: r, end: j.size, ready: make(chan struct{})}
	j.pending = append(j.pending, w)
	return w, nil
}

// maxInflight bounds the fdatasyncs running at once (and the descriptors
// kept for them): two, so that while one runs the next one can start for
// the writers that came meanwhile, and the writers that come while both
// run wait and share the one after (kluis-bench journal measured two ahead
// of one, three and unbounded).
const maxInflight = 2

// waitLocked returns once w is durable or failed: it waits (on w alone,
// without mu) when an fdatasync under way covers w, else starts one. j.mu
// held.
func (j *Journal) waitLocked(w *waiter) {
	for !w.done {
		switch {
		case w.end <= j.covered:
			j.mu.Unlock()
			<-w.ready
			j.mu.Lock()
		case j.inflight >= maxInflight:
			j.cond.Wait()
		default:
			j.syncLocked()
		}
	}
}

// syncLocked runs one fdatasync covering every line written so far (see
// "Group commit" in doc.go). It runs without mu, so writers keep writing
// meanwhile and, when it does not cover their record, start the next one
// (up to maxInflight at once). Back under mu it applies, in file order,
// every record now durable and wakes their writers.
//
// Each fdatasync uses its own descriptor of the file: Linux reports a
// writeback error once per open file description, so two fdatasyncs on one
// descriptor could see one fail and the other succeed for the same pages.
//
// When an fdatasync fails nothing that is not yet known durable is kept:
// the file is cut back to the durable offset and every pending writer gets
// the error (not durable, so not acted upon; it must not come back at the
// next start as if it had been). j.mu held.
func (j *Journal) syncLocked() {
	f, err := j.syncFileLocked()
	if err != nil {
		j.failLocked(err)
		j.cond.Broadcast()
		return
	}
	target, gen, dirty := j.size, j.gen, j.dirDirty
	j.inflight++
	j.syncs++
	if target > j.covered {
		j.covered = target
	}
	j.mu.Unlock()
	if dirty {
		// A compaction renamed the file but could not fsync the
		// directory: until it is, a power cut could bring back the old
		// file and lose what is appended to the new one.
		err = j.o.SyncDir(j.o.Dir)
	}
	if err == nil {
		if err = datasync(f); err != nil {
			err = fmt.Errorf("journal: fsync: %w", err)
		}
	}
	j.mu.Lock()
	j.inflight--
	j.syncFiles = append(j.syncFiles, f)
	defer j.cond.Broadcast()
	if gen != j.gen {
		return // a failure cut the file back meanwhile and failed its writers
	}
	if err != nil {
		j.failLocked(err)
		return
	}
	if dirty {
		j.dirDirty = false
	}
	if target <= j.durable {
		return
	}
	j.durable = target
	n := 0
	for n < len(j.pending) && j.pending[n].end <= target {
		w := j.pending[n]
		j.apply(w.r)
		w.finish(nil)
		n++
	}
	if n == 0 {
		return
	}
	j.pending = append(j.pending[:0:0], j.pending[n:]...)
	close(j.wake)
	j.wake = make(chan struct{})
}

// syncFileLocked returns a descriptor of the journal file for one
// fdatasync. j.mu held.
func (j *Journal) syncFileLocked() (*os.File, error) {
	if n := len(j.syncFiles); n > 0 {
		f := j.syncFiles[n-1]
		j.syncFiles = j.syncFiles[:n-1]
		return f, nil
	}
	f, err := os.Open(j.path)
	if err != nil {
		return nil, fmt.Errorf("journal: open for fsync: %w", err)
	}
	return f, nil
}

// closeSyncFilesLocked closes the spare descriptors (no fdatasync runs).
// j.mu held.
func (j *Journal) closeSyncFilesLocked() {
	for _, f := range j.syncFiles {
		_ = f.Close()
	}
	j.syncFiles = nil
}

// failLocked cuts the file back to its durable part and fails every
// pending writer with err. j.mu held.
func (j *Journal) failLocked(err error) {
	j.writeErrs++
	j.gen++
	_ = j.f.Truncate(j.durable)
	_, _ = j.f.Seek(j.durable, io.SeekStart)
	j.size, j.covered = j.durable, j.durable
	for _, w := range j.pending {
		w.finish(err)
	}
	j.pending = nil
}

// quiesceLocked waits until no fdatasync runs and every written record is
// durable (or failed). j.mu held.
func (j *Journal) quiesceLocked() {
	for j.inflight > 0 || len(j.pending) > 0 {
		if j.inflight == 0 {
			j.syncLocked()
			continue
		}
		j.cond.Wait()
	}
}

// AppendEvent journals e (its ID is filled in when empty) and returns it.
func (j *Journal) AppendEvent(e Event) (Event, error) {
	if e.At.IsZero() {
		e.At = j.o.Clock().UTC()
	}
	r, err := j.Append(Record{Type: TypeEvent, Event: &e})
	if err != nil {
		return e, err
	}
	return *r.Event, nil
}

// Ack records that the backend acknowledged event id, or the result of
// command id (HoldResult). Unknown or already acked ids are ignored (acks
// can be repeated). journaled reports whether
// this call made an ack record durable: only that shows the journal takes
// writes (a repeated ack writes nothing, on a full disk as anywhere).
func (j *Journal) Ack(id string) (journaled bool, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.results[id] == nil && (!j.events[id] || j.acked[id]) {
		return false, nil
	}
	if !j.ackRoomLocked() {
		// The event stays in the outbox and is acknowledged again later.
		return false, ErrNoSpace
	}
	for _, w := range j.pending {
		if w.r.Type == TypeAck && w.r.ID == id {
			// Being acked by another caller: wait for that record (its
			// caller reports it journaled).
			j.waitLocked(w)
			if w.err == nil {
				return false, nil
			}
			break
		}
	}
	if _, err := j.appendLocked(Record{Type: TypeAck, ID: id}); err != nil {
		return false, err
	}
	return true, nil
}

// ackRoomLocked reports whether an ack (or a held result, HoldResult) may
// be written: on a full disk only until half of the reserve's room is
// used, the rest being for the outcomes and alarms of the operations under
// way. j.mu held.
func (j *Journal) ackRoomLocked() bool { return !j.low || j.lowUsed < j.reserve/2 }

// BeginPulse journals a pulse intent durably and returns its command id
// (fresh, non-zero, derived from the record's sequence number).
//
// While the reserve is given up (a full disk, see Space) it refuses with
// ErrNoSpace: the room left is for ending the operations under way, so no
// new door opens. An intent the full disk refuses gives the reserve up
// and is refused too.
func (j *Journal) BeginPulse(in Intent) (Intent, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.low {
		return in, ErrNoSpace
	}
	in.ID = uint32(j.nextSeq)
	if in.ID == 0 {
		j.nextSeq++
		in.ID = uint32(j.nextSeq)
	}
	_, err := j.appendOnceLocked(Record{Type: TypeIntent, Intent: &in}, nil)
	if err != nil && isNoSpace(err) {
		j.releaseLocked(err)
		return in, fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return in, err
}

// EndPulse records that pulse id was accepted by the hardware (done) or,
// with uncertain, that it may or may not have been carried out.
func (j *Journal) EndPulse(id uint32, uncertain bool) error {
	t := TypeDone
	if uncertain {
		t = TypeUncertain
	}
	_, err := j.Append(Record{Type: t, ID: fmt.Sprint(id)})
	return err
}

// Outbox returns the events not yet acknowledged, oldest first.
func (j *Journal) Outbox() []Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.outbox.all()
}

// OutboxNext returns up to n events not yet acknowledged that skip (nil:
// none) does not leave out, oldest first, of one lane: the urgent events
// (Options.Urgent) or the others. It walks only the lane's events up to
// the n-th one taken: a sender that skips its few events in flight reads
// a long backlog in O(window), not O(backlog).
func (j *Journal) OutboxNext(urgent bool, n int, skip func(id string) bool) []Event {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.outbox.next(urgent, n, skip)
}

// WriteErrors is how many record writes and fdatasyncs have failed since
// Open, whoever asked for them (the engine, the link's acks and results):
// the engine holds journal_full raised until it has stayed the same for a
// while.
func (j *Journal) WriteErrors() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.writeErrs
}

// OutboxLen returns the number of unacknowledged events.
func (j *Journal) OutboxLen() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.outbox.at)
}

// OutboxUrgent returns the number of unacknowledged urgent events
// (Options.Urgent).
func (j *Journal) OutboxUrgent() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.outbox.lanes[1].Len()
}

// Changed returns a channel closed at the next append.
func (j *Journal) Changed() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.wake
}

// Pending is an intent whose operation has not ended.
type Pending struct {
	Intent Intent
	// At is when the intent was journaled.
	At time.Time
	// Done: the hardware accepted the command; Uncertain: it may or may
	// not have been carried out; neither: the daemon stopped between
	// journaling the intent and hearing back from the hardware.
	Done, Uncertain bool
}

// Unfinished returns the intents whose operation has not ended (EndOp),
// oldest first.
func (j *Journal) Unfinished() []Pending {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Pending
	for _, r := range j.records {
		if r.Type != TypeIntent || r.Intent == nil {
			continue
		}
		id := fmt.Sprint(r.Intent.ID)
		if j.ended[id] {
			continue
		}
		out = append(out, Pending{Intent: *r.Intent, At: r.At, Done: j.done[id] && !j.unsure[id], Uncertain: j.unsure[id]})
	}
	return out
}

// OpenIntents returns pulse intents without done or uncertain (and not
// ended), oldest first.
func (j *Journal) OpenIntents() []Record {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Record
	for _, r := range j.records {
		if r.Type == TypeIntent && r.Intent != nil {
			id := fmt.Sprint(r.Intent.ID)
			if !j.done[id] && !j.ended[id] {
				out = append(out, r)
			}
		}
	}
	return out
}

// EndOp records that the operation of intent id is over (door closed and
// the outcome journaled, or given up); the intent leaves the journal at the
// next compaction.
func (j *Journal) EndOp(id uint32) error {
	_, err := j.Append(Record{Type: TypeEnd, ID: fmt.Sprint(id)})
	return err
}

// Syncs returns how many fdatasyncs appends have issued since Open: fewer
// than the appends when concurrent ones shared them (group commit).
func (j *Journal) Syncs() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.syncs
}

// Size returns the file size in bytes.
func (j *Journal) Size() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size
}

// live reports whether r survives compaction. j.mu held.
func (j *Journal) live(r Record) bool {
	switch r.Type {
	case TypeEvent:
		return r.Event != nil && !j.acked[r.Event.ID]
	case TypeIntent:
		return r.Intent != nil && !j.ended[fmt.Sprint(r.Intent.ID)]
	case TypeDone, TypeUncertain:
		return !j.ended[r.ID]
	case TypeResult:
		return j.liveResult(r)
	case TypeAck, TypeEnd, TypeMeta:
		return false
	}
	return j.o.Keep(r)
}

// Compact rewrites the journal with only its live records (see package doc).
func (j *Journal) Compact() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	// The new file is made of the applied records: make every record
	// written so far durable and applied first (and let no fdatasync run
	// on the file about to be replaced).
	j.quiesceLocked()
	j.closeSyncFilesLocked()
	var keep []Record
	for _, r := range j.records {
		if j.live(r) {
			keep = append(keep, r)
		}
	}
	sort.SliceStable(keep, func(a, b int) bool { return keep[a].Seq < keep[b].Seq })
	tmp := j.path + ".tmp"
	var buf bytes.Buffer
	meta, err := encodeLine(Record{Seq: 0, Type: TypeMeta, At: j.o.Clock().UTC(), NextSeq: j.nextSeq})
	if err != nil {
		return err
	}
	buf.Write(meta)
	for _, r := range keep {
		line, err := encodeLine(r)
		if err != nil {
			return err
		}
		buf.Write(line)
	}
	size := int64(buf.Len())
	f, err := writeTmp(tmp, buf.Bytes())
	if err != nil && isNoSpace(err) && j.releaseLocked(err) {
		// The new file needs room until the old one is gone: the
		// reserve's (Restore makes it again once the disk has room).
		f, err = writeTmp(tmp, buf.Bytes())
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, j.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("journal: compact rename: %w", err)
	}
	// The new file has the journal's name now: append to it whatever
	// follows (appending to the old one would write to an unlinked file).
	old := j.f
	j.f, j.size, j.durable, j.covered = f, size, size, size
	_ = old.Close()
	j.acked, j.done, j.events = map[string]bool{}, map[string]bool{}, map[string]bool{}
	j.unsure, j.ended = map[string]bool{}, map[string]bool{}
	j.outbox = newOutboxIndex()
	j.results = map[string]*Result{}
	j.records = nil
	for _, r := range keep {
		j.apply(r)
	}
	if err := j.o.SyncDir(j.o.Dir); err != nil {
		j.dirDirty = true
		return err
	}
	j.log.Info("journal compacted", "records", len(keep), "bytes", size)
	return nil
}

// writeTmp writes b into a new file tmp and fsyncs it; on failure the file
// is removed.
func writeTmp(tmp string, b []byte) (*os.File, error) {
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: compact: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("journal: compact: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("journal: compact fsync: %w", err)
	}
	return f, nil
}

// Close closes the file. Appends fail afterwards.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.quiesceLocked()
	j.closeSyncFilesLocked()
	j.closed = true
	return j.f.Close()
}
