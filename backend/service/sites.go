package service

import (
	"context"
	"fmt"
	"strings"

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
// Putting back a compartment that is in service is a no-op. A reason, when
// given, is kept in the audit record.
func (s *Service) SetOutOfService(ctx context.Context, actor string, compartmentID int64, out bool, reason string) (store.Compartment, error) {
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
		details := map[string]any{"device": c.DeviceID, "number": c.Number}
		if r := strings.TrimSpace(reason); r != "" {
			details["reason"] = r
		}
		_, err = audit.Append(ctx, tx, audit.Entry{At: s.clock(), Actor: actor, Action: action,
			Subject: fmt.Sprintf("compartment:%d", c.ID), Details: details})
		return err
	})
	return res, err
}

// UpdateDevice changes a device's name, directions or layout (audited
// device.update with the fields changed).
func (s *Service) UpdateDevice(ctx context.Context, actor, id string, u store.DeviceUpdate) (store.Device, error) {
	if err := checkActor(actor); err != nil {
		return store.Device{}, err
	}
	var out store.Device
	err := s.st.InTx(ctx, func(tx pgx.Tx) error {
		d, err := store.UpdateDevice(ctx, tx, id, u)
		if err != nil {
			return err
		}
		out = d
		var fields []string
		if u.Name != nil {
			fields = append(fields, "name")
		}
		if u.Directions != nil {
			fields = append(fields, "directions")
		}
		if u.SetLayout {
			fields = append(fields, "layout")
		}
		_, err = audit.Append(ctx, tx, audit.Entry{At: s.clock(), Actor: actor, Action: "device.update",
			Subject: "device:" + d.ID, Details: map[string]any{"fields": fields}})
		return err
	})
	return out, err
}

// SetDeviceOutOfService takes a whole device out of service (out, with the
// technician's reason) or puts it back: a device out of service gets no
// new reservations, while documents already in it can still be collected
// and retrieved. A change is audited (device.out_of_service with the
// reason, device.in_service); asking for the state the device is in
// changes nothing.
func (s *Service) SetDeviceOutOfService(ctx context.Context, actor, id string, out bool, reason string) (store.Device, error) {
	if err := checkActor(actor); err != nil {
		return store.Device{}, err
	}
	reason = strings.TrimSpace(reason)
	if out && reason == "" {
		return store.Device{}, &store.ValidationError{Fields: []store.FieldError{{Field: "reason", Message: "is required to take a device out of service"}}}
	}
	var res store.Device
	err := s.st.InTx(ctx, func(tx pgx.Tx) error {
		now := s.clock()
		d, changed, err := store.SetDeviceOutOfService(ctx, tx, id, out, reason, now)
		if err != nil {
			return err
		}
		res = d
		if !changed {
			return nil
		}
		action, details := "device.in_service", map[string]any{}
		if out {
			action = "device.out_of_service"
		}
		if reason != "" {
			details["reason"] = reason
		}
		_, err = audit.Append(ctx, tx, audit.Entry{At: now, Actor: actor, Action: action, Subject: "device:" + d.ID, Details: details})
		return err
	})
	return res, err
}
