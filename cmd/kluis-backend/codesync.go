package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
)

// codeSyncer keeps every device's offline code cache current: it sends a
// full code_sync command (backend/codes' offline bundle in the wire form of
// controller/offline) to a device soon after its codes changed, and checks
// every device periodically, sending only when the bundle differs from the
// last one sent (or the last send is old). The cache never receives a plain
// PIN or token.
type codeSyncer struct {
	codes *codes.Service
	svc   *service.Service
	link  *devicelink.Link
	log   *slog.Logger
	now   func() time.Time
	kick  chan string

	mu   sync.Mutex
	last map[string]sentBundle
}

type sentBundle struct {
	digest [32]byte
	at     time.Time
}

// codeSyncRefresh resends an unchanged bundle after this long.
const codeSyncRefresh = 30 * time.Minute

func newCodeSyncer(c *codes.Service, svc *service.Service, link *devicelink.Link, log *slog.Logger) *codeSyncer {
	return &codeSyncer{codes: c, svc: svc, link: link, log: log.With("part", "code-sync"), now: time.Now,
		kick: make(chan string, 256), last: map[string]sentBundle{}}
}

// mark asks for a prompt sync of a device; never blocks (the periodic
// check catches up when the queue is full).
func (s *codeSyncer) mark(deviceID string) {
	if deviceID == "" {
		return
	}
	select {
	case s.kick <- deviceID:
	default:
	}
}

// run syncs marked devices (after a short pause, so that the transaction
// that changed the codes has committed) and checks all devices every
// interval, until ctx ends.
func (s *codeSyncer) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-s.kick:
			pending := map[string]bool{id: true}
			pause := time.NewTimer(300 * time.Millisecond)
		collect:
			for {
				select {
				case id := <-s.kick:
					pending[id] = true
				case <-pause.C:
					break collect
				case <-ctx.Done():
					pause.Stop()
					return
				}
			}
			for id := range pending {
				s.sync(ctx, id)
			}
		case <-tick.C:
			devs, err := s.svc.ListDevices(ctx, "")
			if err != nil {
				s.log.Warn("list devices", "err", err)
				continue
			}
			for _, d := range devs {
				s.sync(ctx, d.ID)
			}
		}
	}
}

// bundle is the device's offline material in wire form.
func (s *codeSyncer) bundle(ctx context.Context, deviceID string) ([]wire.CodeEntry, error) {
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

func (s *codeSyncer) sync(ctx context.Context, deviceID string) {
	entries, err := s.bundle(ctx, deviceID)
	if err != nil {
		s.log.Warn("offline bundle", "device", deviceID, "err", err)
		return
	}
	js, _ := json.Marshal(entries)
	digest := sha256.Sum256(js)
	now := s.now()
	s.mu.Lock()
	prev, seen := s.last[deviceID]
	s.mu.Unlock()
	if seen && prev.digest == digest && now.Sub(prev.at) < codeSyncRefresh {
		return
	}
	cmd := wire.Command{Kind: wire.CmdCodeSync, By: "system",
		Codes: &wire.CodeSync{Version: now.UnixNano(), Full: true, Entries: entries}}
	if _, err := s.link.SendCommand(ctx, deviceID, cmd); err != nil {
		s.log.Warn("send code sync", "device", deviceID, "err", err)
		return
	}
	s.mu.Lock()
	s.last[deviceID] = sentBundle{digest: digest, at: now}
	s.mu.Unlock()
	s.log.Debug("code sync sent", "device", deviceID, "entries", len(entries))
}

// syncingIssuer is codes.Issuer that marks the device for a code sync
// whenever codes are issued or revoked.
type syncingIssuer struct {
	codes.Issuer
	sync *codeSyncer
}

// Issue implements service.CodeIssuer.
func (i syncingIssuer) Issue(ctx context.Context, tx pgx.Tx, doc store.Document, comp store.Compartment) (any, error) {
	secret, err := i.Issuer.Issue(ctx, tx, doc, comp)
	if err == nil {
		i.sync.mark(comp.DeviceID)
	}
	return secret, err
}

// Revoke implements service.CodeIssuer.
func (i syncingIssuer) Revoke(ctx context.Context, tx pgx.Tx, documentID string) error {
	if err := i.Issuer.Revoke(ctx, tx, documentID); err != nil {
		return err
	}
	if d, err := store.GetDocument(ctx, tx, documentID); err == nil {
		i.sync.mark(d.DeviceID)
	}
	return nil
}

// syncingNotifier marks the document's device after a transition that
// notifies (it runs after the commit).
type syncingNotifier struct {
	service.Notifier
	sync *codeSyncer
}

// Notify implements service.Notifier.
func (n syncingNotifier) Notify(ctx context.Context, note service.Notification) error {
	n.sync.mark(note.Document.DeviceID)
	return n.Notifier.Notify(ctx, note)
}
