package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kluis/backend/api"
	"kluis/backend/lifecycle"
	"kluis/backend/notify"
	"kluis/backend/service"
	"kluis/backend/store"
)

// newNotifier builds the notifier from the configuration: e-mail from
// KLUIS_MAIL_URL (smtp://... or drop:<dir>), SMS from KLUIS_SMS_URL, and
// pickup slips into the slip directory for holders no channel reaches.
// markNotified is called once the holder was told.
func newNotifier(st *store.Store, reg *prometheus.Registry, c config, log *slog.Logger,
	markNotified func(ctx context.Context, id string) error) (*notify.Notifier, error) {
	opts := notify.Options{
		DB:           st.Pool(),
		Slips:        &notify.DirSlips{Dir: c.slipDir},
		From:         c.mailFrom,
		TrackBaseURL: c.publicURL,
		Logger:       log,
		Registerer:   reg,
		OnNotified:   markNotified,
	}
	if c.mailURL != "" {
		m, err := notify.ParseMailURL(c.mailURL)
		if err != nil {
			return nil, err
		}
		opts.Mail = m
	}
	if c.smsURL != "" {
		opts.SMS = &notify.SMSGateway{URL: c.smsURL, Token: c.smsToken}
	}
	return notify.New(opts)
}

var slipName = regexp.MustCompile(`^[0-9a-f-]{36}$`)

// slipReader serves the slips the notifier wrote into dir.
func slipReader(dir string) api.SlipFunc {
	return func(ctx context.Context, doc store.Document) ([]byte, error) {
		if !slipName.MatchString(doc.ID) {
			return nil, fmt.Errorf("slip for %q: %w", doc.ID, store.ErrInvalid)
		}
		b, err := os.ReadFile(filepath.Join(dir, doc.ID+".html"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &api.Error{Status: http.StatusNotFound, Code: "slip_not_found",
				Message: "no pickup slip exists for this document: slips are made when the document is loaded and no e-mail or SMS reached the holder; reissue to make new codes"}
		}
		if err != nil {
			return nil, fmt.Errorf("read slip: %w", err)
		}
		return b, nil
	}
}

// reminderLockKey is the session-level advisory lock one replica holds
// while it sends reminders, so that replicas never remind twice at once.
const reminderLockKey int64 = 0x6b6c7569735f726d // "kluis_rm"

// remind sends the reminders that are due: documents close to their
// deadline whose holder got none yet. Another replica sending reminders at
// the same time makes this pass skip.
func remind(ctx context.Context, st *store.Store, svc *service.Service, log *slog.Logger) {
	conn, err := st.Pool().Acquire(ctx)
	if err != nil {
		log.Warn("reminders: no database connection", "err", err)
		return
	}
	defer conn.Release()
	var mine bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", reminderLockKey).Scan(&mine); err != nil {
		log.Warn("reminders: lock", "err", err)
		return
	}
	if !mine {
		return
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", reminderLockKey); err != nil {
			log.Warn("reminders: unlock", "err", err)
		}
	}()
	ids, err := notify.DueReminders(ctx, st.Pool(), time.Now().UTC(), notify.DefaultReminderLead, 200)
	if err != nil {
		log.Warn("due reminders", "err", err)
		return
	}
	for _, id := range ids {
		if _, err := svc.Renotify(ctx, "system", id); err != nil && !errors.Is(err, lifecycle.ErrForbiddenTransition) {
			log.Warn("reminder", "document", id, "err", err)
		}
	}
}
