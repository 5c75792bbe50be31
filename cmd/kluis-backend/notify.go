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

// remind sends the reminders that are due: documents close to their
// deadline whose holder got none yet.
func remind(ctx context.Context, st *store.Store, svc *service.Service, log *slog.Logger) {
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
