package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5"

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
	"kluis/controller/wire"
)

// wiring is what wire built: the domain part of the API options, the jobs
// to run, and what to close after they stopped (newest first).
type wiring struct {
	api     api.Options
	parts   []part
	closers []func()
	// quiesce, with the embedded broker, stops it taking messages from
	// devices (broker.Broker.Shutdown) while the jobs still run: what it
	// took before is handed to the device link, which then stops and
	// records it.
	quiesce func(context.Context) error
}

func (w *wiring) close() {
	for i := len(w.closers) - 1; i >= 0; i-- {
		w.closers[i]()
	}
}

// late binds the code sync to the service and the device link, which are
// created after it: both need to mark devices for a sync.
type late struct {
	svc  *service.Service
	link *deviceops.SignedLink
}

// SendCommand implements deviceops.CommandSender.
func (l *late) SendCommand(ctx context.Context, device string, cmd wire.Command) (string, error) {
	return l.link.SendCommand(ctx, device, cmd)
}

// CommandStatus implements deviceops.CommandLink.
func (l *late) CommandStatus(ctx context.Context, id string) (devicelink.CommandState, error) {
	return l.link.CommandStatus(ctx, id)
}

// Presence implements deviceops.CommandLink.
func (l *late) Presence(ctx context.Context, device string) (devicelink.PresenceState, error) {
	return l.link.Presence(ctx, device)
}

// ListDevices implements deviceops.DeviceLister.
func (l *late) ListDevices(ctx context.Context, siteID string) ([]store.Device, error) {
	return l.svc.ListDevices(ctx, siteID)
}

// wire builds the use cases, the device link (and the embedded broker) and
// the jobs. ctx bounds start-up calls (the broker credential).
func (s *Server) wire(ctx context.Context, st *store.Store, as *auth.Service) (*wiring, error) {
	o, log, reg := s.o, s.o.Logger, s.o.Registry
	w := &wiring{}
	// Every answer to a device's request is signed for that device and
	// request: kluisd acts on no other (see docs/security.md). In the
	// "kr2" form a verify batch's answers share one signature, made once
	// the batch has committed (the codes service's sealer).
	answers, err := deviceops.NewAnswerSigner(deviceops.AnswerSignerOptions{Key: o.Keys.Signing, Clock: o.Clock, Logger: log,
		Form: o.AnswerSignature, KR1Devices: o.AnswerSignatureKR1Devices, Registerer: reg})
	if err != nil {
		return w, err
	}
	var sealer codes.Sealer
	if answers.Form() == deviceops.AnswerKR2 {
		sealer = answers
	}
	cs, err := codes.New(codes.Options{Pool: st.Pool(), Keys: o.Keys, Clock: o.Clock, Logger: log, Registerer: reg,
		VerifyLeaders: o.VerifyLeaders, Sealer: sealer})
	if err != nil {
		return w, err
	}
	lt := &late{}
	syncer, err := deviceops.NewCodeSync(deviceops.CodeSyncOptions{Codes: cs, Link: lt, Devices: lt,
		Every: o.CodeSyncEvery, Clock: o.Clock, Logger: log, Registerer: reg})
	if err != nil {
		return w, err
	}
	// The notifier marks documents notified through the service, which
	// itself needs the notifier: close the loop with a late-bound function.
	var svc *service.Service
	notifier, err := s.newNotifier(st, func(ctx context.Context, id string) error {
		_, err := svc.MarkNotified(ctx, "system", id)
		return err
	})
	if err != nil {
		return w, fmt.Errorf("notifications: %w", err)
	}
	// Notifications are queued in the transaction of the change they tell
	// about and sent by the outbox (on every replica), with retries.
	outbox, err := notify.NewOutbox(notify.OutboxOptions{Pool: st.Pool(), Notifier: notifier,
		SealKey: DeriveKey(o.Keys, "notification outbox seal"), PreviousSealKey: derivePrevious(o.Keys, "notification outbox seal"), RetryBase: o.RedeliverAfter, RetryMax: o.RedeliverMax,
		Clock: o.Clock, Logger: log, Registerer: reg})
	if err != nil {
		return w, fmt.Errorf("notifications: %w", err)
	}
	w.parts = append(w.parts, part{"notify-outbox", outbox.Run})
	svc, err = service.New(service.Options{
		Store:              st,
		Logger:             log,
		Clock:              o.Clock,
		PseudonymKey:       DeriveKey(o.Keys, "document-number pseudonym"),
		MaxPerDevice:       pickupcode.MaxActiveCodesPerDevice,
		PickOnlineOnly:     true,
		PickupDays:         o.PickupDays,
		PickupPeriods:      o.PickupPeriods,
		Retention:          o.Retention,
		UnclaimedRetention: o.UnclaimedRetention,
		Codes:              syncer.Issuer(codes.Issuer{Service: cs}),
		Outbox:             outbox,
		Notifier:           syncer.Notifier(outbox),       // after commit: wake the sender, mark the device for a code sync
		Purger:             service.Purgers{notifier, cs}, // tracking ids, failure texts, outbox; the codes' date-of-birth digests
	})
	if err != nil {
		return w, err
	}
	lt.svc = svc
	w.api.Service = svc
	w.api.Slip = slipReader(o.SlipDir)
	w.api.Notifications = func(ctx context.Context, id string) ([]api.NotificationRecord, error) {
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
	w.api.TrackPage = &notify.TrackHandler{DB: st.Pool(), Logger: log}
	if o.HousekeepEvery != Disabled {
		rem, err := notify.NewReminders(notify.RemindersOptions{Pool: st.Pool(), Service: svc, Clock: o.Clock,
			Logger: log, Registerer: reg})
		if err != nil {
			return w, err
		}
		w.parts = append(w.parts, part{"reminders", rem.Run},
			part{"housekeeping", func(ctx context.Context) error { return svc.RunHousekeeping(ctx, o.HousekeepEvery) }})
	}

	url, user, pass, linkTLS := o.MQTTURL, o.MQTTUsername, o.MQTTPassword, o.MQTTTLS
	var embedded devicelink.Embedded // the link uses its embedded broker directly
	if url == "" {
		var b *broker.Broker
		if user, pass, b, err = s.startBroker(ctx, st, w); err != nil {
			return w, err
		}
		embedded = b
		url = "tcp://" + s.BrokerAddr()
		if o.BrokerTLS != nil {
			url = "ssl://" + s.BrokerAddr()
			if linkTLS, err = pinned(o.BrokerTLS); err != nil {
				return w, err
			}
		}
	}
	events, err := deviceops.NewEvents(deviceops.EventsOptions{Service: svc, Pool: st.Pool(), Codes: cs,
		Grace: o.CodeGrace, Clock: o.Clock, Logger: log, Registerer: reg, CodesChanged: syncer.Mark})
	if err != nil {
		return w, err
	}
	link, err := devicelink.New(devicelink.Options{
		URL: url, Username: user, Password: pass, TLS: linkTLS, Embedded: embedded,
		Pool:     st.Pool(),
		Events:   events,
		Verifier: answers.Verifier(deviceops.NewVerifier(deviceops.VerifierOptions{Codes: cs, Logger: log, Clock: o.Clock, Seal: sealer != nil})),
		Staff:    answers.Staff(deviceops.NewStaff(deviceops.StaffOptions{Auth: as, Service: svc, Pool: st.Pool(), Logger: log, Clock: o.Clock, Codes: cs})),
		Observer: syncer, // a device back online gets its offline codes at once; heartbeats confirm them
		// Per-device budgets; a request over budget is answered
		// "unavailable", signed like every answer.
		VerifyBudget: o.DeviceVerifyBudget, EventBudget: o.DeviceEventBudget, SignAnswer: answers.Sign,
		AlarmBudget: o.DeviceAlarmBudget, ResultBudget: o.DeviceResultBudget,
		Now:      o.Clock,
		Logger:   log,
		Registry: reg,
	})
	if err != nil {
		return w, err
	}
	// Every command is signed for its device: kluisd refuses unsigned ones.
	signed, err := deviceops.NewSignedLink(deviceops.SignedLinkOptions{Link: link, Key: o.Keys.Signing, Clock: o.Clock})
	if err != nil {
		return w, err
	}
	lt.link = signed
	w.parts = append(w.parts, part{"device-link", link.Run})
	if o.RearmUnfollowed != Disabled {
		f, err := deviceops.NewFollowup(deviceops.FollowupOptions{Pool: st.Pool(), Codes: cs, After: o.RearmUnfollowed,
			Clock: o.Clock, Logger: log, CodesChanged: syncer.Mark})
		if err != nil {
			return w, err
		}
		w.parts = append(w.parts, part{"followup", f.Run})
	}
	if o.CodeSyncEvery != Disabled {
		w.parts = append(w.parts, part{"code-sync", syncer.Run})
	}
	w.api.Presence = func(ctx context.Context, id string) (api.Presence, bool, error) {
		p, err := link.Presence(ctx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return api.Presence{}, false, nil
		}
		if err != nil {
			return api.Presence{}, false, err
		}
		return api.Presence{Online: p.Online, Since: p.Changed, Software: p.Software, LastHeartbeatAt: p.LastHeartbeatAt}, true, nil
	}
	w.api.Opener = deviceops.NewOpener(deviceops.OpenerOptions{Link: signed, Pool: st.Pool(), Clock: o.Clock, Timeout: o.OpenTimeout})
	lockouts, err := deviceops.NewLockouts(deviceops.LockoutsOptions{Codes: cs, Pool: st.Pool(), Link: signed,
		Clock: o.Clock, Timeout: o.OpenTimeout, Logger: log})
	if err != nil {
		return w, err
	}
	w.api.Lockouts = lockouts
	return w, nil
}

// startBroker starts the embedded broker with a fresh password for the
// backend's own MQTT user (the device link itself uses the broker
// directly), and lets admins set devices' passwords over the API.
func (s *Server) startBroker(ctx context.Context, st *store.Store, w *wiring) (user, pass string, _ *broker.Broker, err error) {
	o := s.o
	creds := devicelink.NewCredentials(devicelink.CredentialsOptions{Pool: st.Pool(), Logger: o.Logger, Params: o.MQTTParams, Now: o.Clock,
		CheckKey: DeriveKey(o.Keys, "mqtt credential checks"), Registerer: o.Registry})
	p, err := RandomPassword()
	if err != nil {
		return "", "", nil, err
	}
	user, pass = BackendMQTTUser, p+p // 48 characters
	if err := creds.Set(ctx, user, broker.RoleBackend, pass); err != nil {
		return "", "", nil, fmt.Errorf("backend MQTT credential: %w", err)
	}
	b, err := broker.New(broker.Options{Addr: o.MQTTAddr, TLS: o.BrokerTLS, MaxConnections: s.fds.Broker, Credentials: creds.Check, Logger: o.Logger, Registry: o.Registry})
	if err != nil {
		return "", "", nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}
	if err := b.Start(); err != nil {
		_ = b.Close()
		return "", "", nil, fmt.Errorf("embedded MQTT broker: %w", err)
	}
	w.closers = append(w.closers, func() { _ = b.Close() })
	w.quiesce = b.Shutdown
	w.api.Ready = func(context.Context) error { return b.Healthy() }
	w.api.BrokerFull = b.Full
	w.api.DevicePassword = func(ctx context.Context, id, pw string) error {
		err := creds.Set(ctx, id, broker.RoleDevice, pw)
		if errors.Is(err, devicelink.ErrCredential) {
			return &api.Error{Status: http.StatusConflict, Code: "conflict", Message: "this device id cannot have an MQTT password", Err: err}
		}
		if err == nil {
			// A password is checked at CONNECT only: whoever connected
			// with the old one (a leaked password is why it is set
			// again) would otherwise stay connected.
			b.DisconnectDevice(id)
		}
		return err
	}
	s.mu.Lock()
	s.brokerAddr = b.Addr()
	s.mu.Unlock()
	o.Logger.Info("embedded MQTT broker listening", "addr", b.Addr())
	return user, pass, b, nil
}

// pinned is the TLS configuration of the backend's own link to its
// embedded broker: it accepts the broker's own certificate and nothing
// else (whatever name or CA it has).
func pinned(broker *tls.Config) (*tls.Config, error) {
	if len(broker.Certificates) == 0 || len(broker.Certificates[0].Certificate) == 0 {
		return nil, errors.New("embedded MQTT broker: TLS without a certificate")
	}
	own := broker.Certificates[0].Certificate[0]
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The name is not checked; the certificate itself is, below.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], own) {
				return errors.New("embedded MQTT broker: not our own certificate")
			}
			return nil
		},
	}, nil
}
