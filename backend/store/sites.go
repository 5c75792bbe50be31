package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const siteColumns = "id, name, time_zone, address, created_at"

func scanSite(row pgx.Row) (Site, error) {
	var s Site
	err := row.Scan(&s.ID, &s.Name, &s.TimeZone, &s.Address, &s.CreatedAt)
	s.CreatedAt = s.CreatedAt.UTC()
	return s, err
}

// CreateSite validates and inserts a site; ErrConflict when the id exists.
func CreateSite(ctx context.Context, db DB, n NewSite, now time.Time) (Site, error) {
	if err := n.Validate(); err != nil {
		return Site{}, err
	}
	s, err := scanSite(db.QueryRow(ctx, `INSERT INTO sites (id, name, time_zone, address, created_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+siteColumns, n.ID, n.Name, n.TimeZone, n.Address, now.UTC()))
	if IsUniqueViolation(err) {
		return Site{}, fmt.Errorf("site %q already exists: %w", n.ID, ErrConflict)
	}
	if err != nil {
		return Site{}, fmt.Errorf("store: create site: %w", err)
	}
	return s, nil
}

// GetSite returns one site or ErrNotFound.
func GetSite(ctx context.Context, db DB, id string) (Site, error) {
	s, err := scanSite(db.QueryRow(ctx, "SELECT "+siteColumns+" FROM sites WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Site{}, fmt.Errorf("site %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Site{}, fmt.Errorf("store: get site: %w", err)
	}
	return s, nil
}

// ListSites returns every site by id.
func ListSites(ctx context.Context, db DB) ([]Site, error) {
	rows, err := db.Query(ctx, "SELECT "+siteColumns+" FROM sites ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("store: list sites: %w", err)
	}
	defer rows.Close()
	out := []Site{}
	for rows.Next() {
		s, err := scanSite(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list sites: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list sites: %w", err)
	}
	return out, nil
}

// DefaultTimeZone is the time zone of sites that name none.
const DefaultTimeZone = "Europe/Brussels"

// Location returns the site's time zone for showing times (stored in UTC)
// to people; an unknown or empty zone gives Europe/Brussels.
func (s Site) Location() *time.Location {
	tz := s.TimeZone
	if tz == "" {
		tz = DefaultTimeZone
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		loc, err = time.LoadLocation(DefaultTimeZone)
		if err != nil {
			return time.UTC
		}
	}
	return loc
}

// LocalTime shows t in the site's time zone.
func (s Site) LocalTime(t time.Time) time.Time { return t.In(s.Location()) }
