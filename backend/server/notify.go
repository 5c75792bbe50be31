package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"

	"kluis/backend/api"
	"kluis/backend/notify"
	"kluis/backend/store"
)

// newNotifier builds the notifier from the options: e-mail from MailURL
// (smtp://... or drop:<dir>), SMS from SMSURL, and pickup slips into the
// slip directory for holders no channel reaches. markNotified is called
// once the holder was told.
func (s *Server) newNotifier(st *store.Store, markNotified func(ctx context.Context, id string) error) (*notify.Notifier, error) {
	o := s.o
	opts := notify.Options{
		DB:           st.Pool(),
		Slips:        &notify.DirSlips{Dir: o.SlipDir},
		From:         o.MailFrom,
		TrackBaseURL: o.PublicURL,
		Clock:        o.Clock,
		Logger:       o.Logger,
		Registerer:   o.Registry,
		OnNotified:   markNotified,
	}
	if o.MailURL != "" {
		m, err := notify.ParseMailURL(o.MailURL)
		if err != nil {
			return nil, err
		}
		opts.Mail = m
	}
	if o.SMSURL != "" {
		opts.SMS = &notify.SMSGateway{URL: o.SMSURL, Token: o.SMSToken}
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
