package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/api"
	"kluis/backend/auth"
	"kluis/backend/broker"
	"kluis/backend/codes"
	"kluis/backend/devicelink"
	"kluis/backend/deviceops"
	"kluis/backend/notify"
	"kluis/backend/service"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
)

// deps are the collaborators of the API and their background loops.
type deps struct {
	codes   *codes.Service
	service *service.Service
	api     api.Options     // the domain part of the API options
	ctx     context.Context // ends at close
	link    *devicelink.Link
	// brokerAddr is the embedded broker's address ("" with an external broker).
	brokerAddr string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	closers    []func()
}

// close stops the background loops and releases resources, newest first.
func (d *deps) close() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// go runs fn in the background until close.
func (d *deps) goLoop(fn func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		fn()
	}()
}

// every runs fn now and then every interval until close.
func (d *deps) every(interval time.Duration, fn func(ctx context.Context)) {
	d.goLoop(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			fn(d.ctx)
			select {
			case <-d.ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// deriveKey derives a purpose-bound key from the PIN key, so that no extra
// secret has to be kept: HMAC-SHA256(PIN key, "kluis <purpose> v1").
func deriveKey(k codes.Keys, purpose string) []byte {
	m := hmac.New(sha256.New, k.PIN)
	m.Write([]byte("kluis " + purpose + " v1"))
	return m.Sum(nil)
}

// wire builds the codes and document services and starts housekeeping.
func wireDeps(ctx context.Context, st *store.Store, reg *prometheus.Registry, keys codes.Keys, as *auth.Service, c config, e env, log *slog.Logger) (*deps, error) {
	d := &deps{}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.ctx, d.cancel = lctx, cancel

	var err error
	d.codes, err = codes.New(codes.Options{Pool: st.Pool(), Keys: keys, Logger: log, Registerer: reg})
	if err != nil {
		d.close()
		return nil, err
	}
	// The notifier marks documents notified through the service, which
	// itself needs the notifier: close the loop with a late-bound function.
	var svc *service.Service
	syncer := newCodeSyncer(d.codes, nil, nil, log)
	notifier, err := newNotifier(st, reg, c, log, func(ctx context.Context, id string) error {
		_, err := svc.MarkNotified(ctx, "system", id)
		return err
	})
	if err != nil {
		d.close()
		return nil, fmt.Errorf("notifications: %w", err)
	}
	svc, err = service.New(service.Options{
		Store:         st,
		Logger:        log,
		PseudonymKey:  deriveKey(keys, "document-number pseudonym"),
		MaxPerDevice:  pickupcode.MaxActiveCodesPerDevice,
		PickupDays:    c.pickup.days,
		PickupPeriods: c.pickup.exact,
		Retention:     c.retention,
		Codes:         syncingIssuer{Issuer: codes.Issuer{Service: d.codes}, sync: syncer},
		Notifier:      syncingNotifier{Notifier: notifier, sync: syncer},
		Purger:        notifier,
	})
	if err != nil {
		d.close()
		return nil, err
	}
	d.service = svc
	d.api.Service = svc
	d.api.Slip = slipReader(c.slipDir)
	d.api.Notifications = func(ctx context.Context, id string) ([]api.NotificationRecord, error) {
		recs, err := notify.History(ctx, st.Pool(), id)
		if err != nil {
			return nil, err
		}
		out := make([]api.NotificationRecord, 0, len(recs))
		for _, r := range recs {
			out = append(out, api.NotificationRecord{Kind: r.Kind, Channel: r.Channel, Status: r.Status, Error: r.Error, At: r.At})
		}
		return out, nil
	}
	d.api.TrackPage = &notify.TrackHandler{DB: st.Pool(), Logger: log}
	if c.housekeepEvery > 0 {
		d.every(10*time.Minute, func(ctx context.Context) { remind(ctx, st, svc, log) })
	}
	if c.housekeepEvery > 0 {
		d.goLoop(func() { _ = d.service.RunHousekeeping(lctx, c.housekeepEvery) })
	}
	if err := d.startLink(ctx, st, reg, as, c, e, log, syncer); err != nil {
		d.close()
		return nil, err
	}
	syncer.svc, syncer.link = svc, d.link
	if c.codeSyncEvery > 0 {
		d.goLoop(func() { syncer.run(d.ctx, c.codeSyncEvery) })
	}
	return d, nil
}

// backendMQTTUser is the embedded broker's user for this backend's link.
const backendMQTTUser = store.ReservedDeviceID

// startLink starts the embedded broker when no MQTT_URL is given, then the
// device link with the verifier, the event handler and the opener.
func (d *deps) startLink(ctx context.Context, st *store.Store, reg *prometheus.Registry, as *auth.Service, c config, e env, log *slog.Logger, syncer *codeSyncer) error {
	url, user, pass := c.mqttURL, c.mqttUser, c.mqttPass
	if url == "" {
		creds := devicelink.NewCredentials(devicelink.CredentialsOptions{Pool: st.Pool(), Logger: log, Params: mqttParams(e)})
		p, err := randomPassword()
		if err != nil {
			return err
		}
		user, pass = backendMQTTUser, p+p // 48 characters
		if err := creds.Set(ctx, user, broker.RoleBackend, pass); err != nil {
			return fmt.Errorf("backend MQTT credential: %w", err)
		}
		b, err := broker.New(broker.Options{Addr: c.mqttAddr, Credentials: creds.Check, Logger: log, Registry: reg})
		if err != nil {
			return fmt.Errorf("embedded MQTT broker: %w", err)
		}
		if err := b.Start(); err != nil {
			_ = b.Close()
			return fmt.Errorf("embedded MQTT broker: %w", err)
		}
		d.closers = append(d.closers, func() { _ = b.Close() })
		d.api.DevicePassword = func(ctx context.Context, id, pw string) error {
			err := creds.Set(ctx, id, broker.RoleDevice, pw)
			if errors.Is(err, devicelink.ErrCredential) {
				return &api.Error{Status: http.StatusConflict, Code: "conflict", Message: "this device id cannot have an MQTT password", Err: err}
			}
			return err
		}
		d.brokerAddr = b.Addr()
		url = "tcp://" + b.Addr()
		log.Info("embedded MQTT broker listening", "addr", b.Addr())
	}
	events, err := deviceops.NewEvents(deviceops.EventsOptions{Service: d.service, Pool: st.Pool(), Codes: d.codes,
		Grace: c.codeGrace, Logger: log, Registerer: reg, CodesChanged: syncer.mark})
	if err != nil {
		return err
	}
	link, err := devicelink.New(devicelink.Options{
		URL: url, Username: user, Password: pass,
		Pool:     st.Pool(),
		Events:   events,
		Verifier: deviceops.NewVerifier(deviceops.VerifierOptions{Codes: d.codes, Logger: log}),
		Staff:    deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: d.service, Pool: st.Pool(), Logger: log}),
		Logger:   log,
		Registry: reg,
	})
	if err != nil {
		return err
	}
	d.link = link
	d.goLoop(func() { _ = link.Run(d.ctx) })
	if c.rearmUnfollowed > 0 {
		f, err := deviceops.NewFollowup(deviceops.FollowupOptions{Pool: st.Pool(), Codes: d.codes, After: c.rearmUnfollowed,
			Logger: log, CodesChanged: syncer.mark})
		if err != nil {
			return err
		}
		every := min(max(c.rearmUnfollowed/5, time.Second), time.Minute)
		d.goLoop(func() { _ = f.Run(d.ctx, every) })
	}
	d.api.Presence = func(ctx context.Context, id string) (api.Presence, bool, error) {
		p, err := link.Presence(ctx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return api.Presence{}, false, nil
		}
		if err != nil {
			return api.Presence{}, false, err
		}
		return api.Presence{Online: p.Online, Since: p.Changed, Software: p.Software, LastHeartbeatAt: p.LastHeartbeatAt}, true, nil
	}
	d.api.Opener = deviceops.NewOpener(deviceops.OpenerOptions{Link: link, Pool: st.Pool(), Timeout: c.openTimeout})
	lockouts, err := deviceops.NewLockouts(deviceops.LockoutsOptions{Codes: d.codes, Pool: st.Pool(), Link: link,
		Timeout: c.openTimeout, Logger: log})
	if err != nil {
		return err
	}
	d.api.Lockouts = lockouts
	return nil
}

// mqttParams lowers the MQTT credential hashing cost like hashParams.
func mqttParams(e env) pickupcode.ArgonParams {
	if e.getenv("KLUIS_INSECURE_FAST_HASH") == "1" {
		return pickupcode.ArgonParams{Time: 1, MemoryKiB: 1024, Threads: 1}
	}
	return pickupcode.ArgonParams{}
}

// defaultHousekeepEvery is how often expiry and purge run.
const defaultHousekeepEvery = time.Minute
