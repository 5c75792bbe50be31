package service

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"kluis/backend/audit"
	"kluis/backend/store"
)

// CreateSite adds a site (audited).
func (s *Service) CreateSite(ctx context.Context, actor string, n store.NewSite) (store.Site, error) {
	if err := checkActor(actor); err != nil {
		return store.Site{}, err
	}
	var out store.Site
	err := s.st.InTx(ctx, func(tx pgx.Tx) error {
		now := s.clock()
		site, err := store.CreateSite(ctx, tx, n, now)
		if err != nil {
			return err
		}
		out = site
		_, err = audit.Append(ctx, tx, audit.Entry{At: now, Actor: actor, Action: "site.create",
			Subject: "site:" + site.ID, Details: map[string]any{"time_zone": site.TimeZone}})
		return err
	})
	return out, err
}

// GetSite returns a site or ErrNotFound.
func (s *Service) GetSite(ctx context.Context, id string) (store.Site, error) {
	return store.GetSite(ctx, s.db, id)
}

// ListSites returns every site.
func (s *Service) ListSites(ctx context.Context) ([]store.Site, error) {
	return store.ListSites(ctx, s.db)
}

// CreateDevice adds a device with its compartments, all or nothing (audited).
func (s *Service) CreateDevice(ctx context.Context, actor string, n store.NewDevice) (store.Device, error) {
	if err := checkActor(actor); err != nil {
		return store.Device{}, err
	}
	var out store.Device
	err := s.st.InTx(ctx, func(tx pgx.Tx) error {
		now := s.clock()
		d, err := store.CreateDevice(ctx, tx, n, now)
		if err != nil {
			return err
		}
		out = d
		_, err = audit.Append(ctx, tx, audit.Entry{At: now, Actor: actor, Action: "device.create",
			Subject: "device:" + d.ID, Details: map[string]any{"site": d.SiteID, "kind": d.Kind,
				"compartments": len(d.Compartments)}})
		return err
	})
	return out, err
}

// GetDevice returns a device with its compartments, or ErrNotFound.
func (s *Service) GetDevice(ctx context.Context, id string) (store.Device, error) {
	return store.GetDevice(ctx, s.db, id)
}

// ListDevices returns the devices of a site ("" for all).
func (s *Service) ListDevices(ctx context.Context, siteID string) ([]store.Device, error) {
	return store.ListDevices(ctx, s.db, siteID)
}

// SetOutOfService takes a compartment out of service (out true) or puts it
// back (out false). Only a free compartment can be taken out: a compartment
// holding a document gives ErrConflict (retrieve or unreserve it first).
// Putting back a compartment that is in service is a no-op.
func (s *Service) SetOutOfService(ctx context.Context, actor string, compartmentID int64, out bool) (store.Compartment, error) {
	if err := checkActor(actor); err != nil {
		return store.Compartment{}, err
	}
	var res store.Compartment
	err := s.st.InTx(ctx, func(tx pgx.Tx) error {
		c, err := store.LockCompartment(ctx, tx, compartmentID)
		if err != nil {
			return err
		}
		var to store.CompartmentState
		switch {
		case out && c.State == store.CompartmentOutOfService, !out && c.State != store.CompartmentOutOfService:
			res = c
			return nil
		case out && c.State != store.CompartmentFree:
			return fmt.Errorf("compartment %d of device %s is %s; only a free compartment can be taken out of service: %w",
				c.Number, c.DeviceID, c.State, ErrConflict)
		case out:
			to = store.CompartmentOutOfService
		default:
			to = store.CompartmentFree
		}
		res, err = store.SetCompartmentState(ctx, tx, c.ID, to)
		if err != nil {
			return err
		}
		action := "compartment.in_service"
		if out {
			action = "compartment.out_of_service"
		}
		_, err = audit.Append(ctx, tx, audit.Entry{At: s.clock(), Actor: actor, Action: action,
			Subject: fmt.Sprintf("compartment:%d", c.ID), Details: map[string]any{"device": c.DeviceID, "number": c.Number}})
		return err
	})
	return res, err
}
