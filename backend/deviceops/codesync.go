package deviceops

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/codes"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// Defaults of CodeSyncOptions.
const (
	// DefaultCodeSyncEvery is how often every device's bundle is checked.
	DefaultCodeSyncEvery = time.Minute
	// DefaultCodeSyncRefresh resends an unchanged bundle after this long.
	DefaultCodeSyncRefresh = 30 * time.Minute
	// DefaultCodeSyncPause is how long a marked device waits, so that the
	// transaction that changed its codes has committed and several changes
	// go out in one command.
	DefaultCodeSyncPause = 300 * time.Millisecond
)

// CommandSender sends a command to a device (devicelink.Link).
type CommandSender interface {
	SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error)
}

// DeviceLister lists the devices (service.Service).
type DeviceLister interface {
	ListDevices(ctx context.Context, siteID string) ([]store.Device, error)
}

// CodeSyncOptions configure NewCodeSync.
type CodeSyncOptions struct {
	// Codes gives the offline bundles (required).
	Codes *codes.Service
	// Devices lists the devices to check periodically (required).
	Devices DeviceLister
	// Sender sends the code_sync commands (required; it may be bound late,
	// but before Run).
	Sender CommandSender
	// Every is the interval of the check of all devices; default
	// DefaultCodeSyncEvery.
	Every time.Duration
	// Refresh resends an unchanged bundle after this long; default
	// DefaultCodeSyncRefresh.
	Refresh time.Duration
	// Pause delays the sync of a marked device; default DefaultCodeSyncPause.
	Pause time.Duration
	// Clock gives the time (the command's version); default time.Now.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Registerer receives kluis_code_syncs_total; nil: not registered.
	Registerer prometheus.Registerer
}

// CodeSync keeps every device's offline code cache current: it sends a full
// code_sync command (the device's [codes.Service.OfflineBundle] in the wire
// form of controller/offline) to a device soon after its codes changed
// ([CodeSync.Mark]), and checks every device periodically, sending only
// when the bundle differs from the last one sent (or the last send is
// old). The cache never receives a plain PIN or token.
type CodeSync struct {
	codes   *codes.Service
	devices DeviceLister
	sender  CommandSender
	every   time.Duration
	refresh time.Duration
	pause   time.Duration
	now     func() time.Time
	log     *slog.Logger
	syncs   *prometheus.CounterVec
	kick    chan string

	mu   sync.Mutex
	last map[string]sentBundle
}

type sentBundle struct {
	digest [32]byte
	at     time.Time
}

// NewCodeSync checks o and returns a CodeSync.
func NewCodeSync(o CodeSyncOptions) (*CodeSync, error) {
	if o.Codes == nil || o.Devices == nil || o.Sender == nil {
		return nil, errors.New("deviceops: code sync needs codes, devices and a sender")
	}
	if o.Every <= 0 {
		o.Every = DefaultCodeSyncEvery
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultCodeSyncRefresh
	}
	if o.Pause <= 0 {
		o.Pause = DefaultCodeSyncPause
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &CodeSync{codes: o.Codes, devices: o.Devices, sender: o.Sender, every: o.Every, refresh: o.Refresh,
		pause: o.Pause, now: o.Clock, log: o.Logger.With("part", "code-sync"),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kluis_code_syncs_total",
			Help: "Offline code bundles sent to devices (sent) or not sent after an error (failed)."}, []string{"result"}),
		kick: make(chan string, 256), last: map[string]sentBundle{}}
	for _, r := range []string{"sent", "failed"} {
		s.syncs.WithLabelValues(r)
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.syncs); err != nil {
			return nil, fmt.Errorf("deviceops: code sync metrics: %w", err)
		}
	}
	return s, nil
}

// Mark asks for a prompt sync of a device; it never blocks (the periodic
// check catches up when the queue is full).
func (s *CodeSync) Mark(deviceID string) {
	if deviceID == "" {
		return
	}
	select {
	case s.kick <- deviceID:
	default:
	}
}

// Run syncs marked devices (after the pause) and checks all devices every
// interval, until ctx ends; it returns ctx's error.
func (s *CodeSync) Run(ctx context.Context) error {
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case id := <-s.kick:
			pending := map[string]bool{id: true}
			pause := time.NewTimer(s.pause)
		collect:
			for {
				select {
				case id := <-s.kick:
					pending[id] = true
				case <-pause.C:
					break collect
				case <-ctx.Done():
					pause.Stop()
					return ctx.Err()
				}
			}
			for id := range pending {
				s.Sync(ctx, id)
			}
		case <-tick.C:
			devs, err := s.devices.ListDevices(ctx, "")
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("list devices", "err", err)
				}
				continue
			}
			for _, d := range devs {
				s.Sync(ctx, d.ID)
			}
		}
	}
}

// bundle is the device's offline material in wire form.
func (s *CodeSync) bundle(ctx context.Context, deviceID string) ([]wire.CodeEntry, error) {
	entries, err := s.codes.OfflineBundle(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	out := make([]wire.CodeEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, wire.CodeEntry{
			DocumentID:   e.DocumentID,
			Addr:         wire.Address{Board: e.Board, Channel: e.Channel},
			Expires:      e.ExpiresAt,
			QRHash:       pickupcode.QRHash(e.CodeID),
			PINHash:      e.PINHash(),
			SecondFactor: e.NeedsDOB,
		})
	}
	return out, nil
}

// Sync sends the device's bundle unless it equals the last one sent less
// than the refresh interval ago, and reports whether it sent. Failures are
// logged (the next check retries).
func (s *CodeSync) Sync(ctx context.Context, deviceID string) bool {
	entries, err := s.bundle(ctx, deviceID)
	if err != nil {
		s.syncs.WithLabelValues("failed").Inc()
		s.log.Warn("offline bundle", "device", deviceID, "err", err)
		return false
	}
	js, _ := json.Marshal(entries)
	digest := sha256.Sum256(js)
	now := s.now()
	s.mu.Lock()
	prev, seen := s.last[deviceID]
	s.mu.Unlock()
	if seen && prev.digest == digest && now.Sub(prev.at) < s.refresh {
		return false
	}
	cmd := wire.Command{Kind: wire.CmdCodeSync, By: "system",
		Codes: &wire.CodeSync{Version: now.UnixNano(), Full: true, Entries: entries}}
	if _, err := s.sender.SendCommand(ctx, deviceID, cmd); err != nil {
		s.syncs.WithLabelValues("failed").Inc()
		s.log.Warn("send code sync", "device", deviceID, "err", err)
		return false
	}
	s.mu.Lock()
	s.last[deviceID] = sentBundle{digest: digest, at: now}
	s.mu.Unlock()
	s.syncs.WithLabelValues("sent").Inc()
	s.log.Debug("code sync sent", "device", deviceID, "entries", len(entries))
	return true
}

// Issuer wraps a code issuer so that issuing or revoking codes marks the
// device for a sync.
func (s *CodeSync) Issuer(i service.CodeIssuer) service.CodeIssuer { return syncingIssuer{i, s} }

// Notifier wraps a notifier so that a transition that notifies (it runs
// after the commit) marks the document's device for a sync.
func (s *CodeSync) Notifier(n service.Notifier) service.Notifier { return syncingNotifier{n, s} }

type syncingIssuer struct {
	service.CodeIssuer
	sync *CodeSync
}

// Issue implements service.CodeIssuer.
func (i syncingIssuer) Issue(ctx context.Context, tx pgx.Tx, doc store.Document, comp store.Compartment) (any, error) {
	secret, err := i.CodeIssuer.Issue(ctx, tx, doc, comp)
	if err == nil {
		i.sync.Mark(comp.DeviceID)
	}
	return secret, err
}

// Revoke implements service.CodeIssuer.
func (i syncingIssuer) Revoke(ctx context.Context, tx pgx.Tx, documentID string) error {
	if err := i.CodeIssuer.Revoke(ctx, tx, documentID); err != nil {
		return err
	}
	if d, err := store.GetDocument(ctx, tx, documentID); err == nil {
		i.sync.Mark(d.DeviceID)
	}
	return nil
}

type syncingNotifier struct {
	service.Notifier
	sync *CodeSync
}

// Notify implements service.Notifier.
func (n syncingNotifier) Notify(ctx context.Context, note service.Notification) error {
	n.sync.Mark(note.Document.DeviceID)
	return n.Notifier.Notify(ctx, note)
}
