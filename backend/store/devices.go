package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const deviceColumns = "id, site_id, kind, name, directions, created_at, layout, out_of_service_at, out_of_service_reason"

func scanDevice(row pgx.Row) (Device, error) {
	var d Device
	var oosAt *time.Time
	var oosReason string
	err := row.Scan(&d.ID, &d.SiteID, &d.Kind, &d.Name, &d.Directions, &d.CreatedAt, &d.Layout, &oosAt, &oosReason)
	d.CreatedAt = d.CreatedAt.UTC()
	if d.Directions == nil {
		d.Directions = map[string]string{}
	}
	if oosAt != nil {
		d.OutOfService = &DeviceOutOfService{Since: oosAt.UTC(), Reason: oosReason}
	}
	return d, err
}

const compartmentColumns = "id, device_id, number, board, channel, size, height_cm, state"

func scanCompartment(row pgx.Row) (Compartment, error) {
	var c Compartment
	err := row.Scan(&c.ID, &c.DeviceID, &c.Number, &c.Board, &c.Channel, &c.Size, &c.HeightCM, &c.State)
	return c, err
}

func collectCompartments(rows pgx.Rows, err error) ([]Compartment, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Compartment{}
	for rows.Next() {
		c, err := scanCompartment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CreateDevice validates and inserts a device with its compartments (use
// inside a transaction so that it is all or nothing). ErrNotFound when the
// site does not exist, ErrConflict when the device id exists.
func CreateDevice(ctx context.Context, db DB, n NewDevice, now time.Time) (Device, error) {
	if err := n.Validate(); err != nil {
		return Device{}, err
	}
	if _, err := GetSite(ctx, db, n.SiteID); err != nil {
		return Device{}, err
	}
	d, err := scanDevice(db.QueryRow(ctx, `INSERT INTO devices (id, site_id, kind, name, directions, created_at, layout)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+deviceColumns, n.ID, n.SiteID, n.Kind, n.Name, n.Directions, now.UTC(), n.Layout))
	if IsUniqueViolation(err) {
		return Device{}, fmt.Errorf("device %q already exists: %w", n.ID, ErrConflict)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: create device: %w", err)
	}
	for _, c := range n.Compartments {
		cp, err := scanCompartment(db.QueryRow(ctx, `INSERT INTO compartments (device_id, number, board, channel, size, height_cm)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+compartmentColumns, d.ID, c.Number, c.Board, c.Channel, c.Size, c.HeightCM))
		if err != nil {
			return Device{}, fmt.Errorf("store: create compartment %d: %w", c.Number, err)
		}
		d.Compartments = append(d.Compartments, cp)
	}
	return d, nil
}

// GetDevice returns a device with its compartments, or ErrNotFound.
func GetDevice(ctx context.Context, db DB, id string) (Device, error) {
	d, err := scanDevice(db.QueryRow(ctx, "SELECT "+deviceColumns+" FROM devices WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Device{}, fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("store: get device: %w", err)
	}
	d.Compartments, err = ListCompartments(ctx, db, id)
	if err != nil {
		return Device{}, err
	}
	return d, nil
}

// ListDevices returns the devices of a site ("" for all), without
// compartments, by id.
func ListDevices(ctx context.Context, db DB, siteID string) ([]Device, error) {
	rows, err := db.Query(ctx, "SELECT "+deviceColumns+" FROM devices WHERE $1 = '' OR site_id = $1 ORDER BY id", siteID)
	if err != nil {
		return nil, fmt.Errorf("store: list devices: %w", err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list devices: %w", err)
	}
	return out, nil
}

// ListCompartments returns a device's compartments in number order.
func ListCompartments(ctx context.Context, db DB, deviceID string) ([]Compartment, error) {
	cs, err := collectCompartments(db.Query(ctx, "SELECT "+compartmentColumns+" FROM compartments WHERE device_id = $1 ORDER BY number", deviceID))
	if err != nil {
		return nil, fmt.Errorf("store: list compartments: %w", err)
	}
	return cs, nil
}

func oneCompartment(ctx context.Context, db DB, what, sql string, args ...any) (Compartment, error) {
	c, err := scanCompartment(db.QueryRow(ctx, sql, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		return Compartment{}, fmt.Errorf("compartment %s: %w", what, ErrNotFound)
	}
	if err != nil {
		return Compartment{}, fmt.Errorf("store: get compartment %s: %w", what, err)
	}
	return c, nil
}

// GetCompartment returns a compartment by id, or ErrNotFound.
func GetCompartment(ctx context.Context, db DB, id int64) (Compartment, error) {
	return oneCompartment(ctx, db, fmt.Sprint(id), "SELECT "+compartmentColumns+" FROM compartments WHERE id = $1", id)
}

// CompartmentByNumber returns a device's compartment by its 1-based label.
func CompartmentByNumber(ctx context.Context, db DB, deviceID string, number int) (Compartment, error) {
	return oneCompartment(ctx, db, fmt.Sprintf("%d of device %q", number, deviceID),
		"SELECT "+compartmentColumns+" FROM compartments WHERE device_id = $1 AND number = $2", deviceID, number)
}

// CompartmentByAddress returns a device's compartment by its 0-based
// hardware address.
func CompartmentByAddress(ctx context.Context, db DB, deviceID string, board, channel int) (Compartment, error) {
	return oneCompartment(ctx, db, fmt.Sprintf("at board %d channel %d of device %q", board, channel, deviceID),
		"SELECT "+compartmentColumns+" FROM compartments WHERE device_id = $1 AND board = $2 AND channel = $3", deviceID, board, channel)
}

// LockCompartment reads a compartment FOR UPDATE (inside a transaction).
func LockCompartment(ctx context.Context, tx pgx.Tx, id int64) (Compartment, error) {
	return oneCompartment(ctx, tx, fmt.Sprint(id), "SELECT "+compartmentColumns+" FROM compartments WHERE id = $1 FOR UPDATE", id)
}

// SetCompartmentState writes a compartment's state.
func SetCompartmentState(ctx context.Context, db DB, id int64, st CompartmentState) (Compartment, error) {
	return oneCompartment(ctx, db, fmt.Sprint(id),
		"UPDATE compartments SET state = $2 WHERE id = $1 RETURNING "+compartmentColumns, id, st)
}

// Pick describes the compartment a reservation needs.
type Pick struct {
	// SiteID limits the search to the site's devices.
	SiteID string
	// DeviceID, when set, limits it to one device.
	DeviceID string
	// MinSize is the smallest size that takes the document.
	MinSize Size
	// Low asks for a compartment at most LowMaxHeightCM from the floor.
	Low bool
	// LowMaxHeightCM is the low threshold (also used to keep low
	// compartments free for those who need them).
	LowMaxHeightCM int
	// MaxPerDevice, when above 0, skips devices already holding that many
	// documents with live codes (reserved, loaded or notified).
	MaxPerDevice int
	// OnlineOnly limits the search to devices whose presence is online
	// now (device_presence, written by the device link): a device that
	// never connected has no presence row and is never picked, nor is
	// one that is offline.
	OnlineOnly bool
	// Skip are devices never to pick (the service's: not fit to serve).
	Skip []string
	// Last are devices to pick only when no other has a fitting
	// compartment (the service's: open alarms that do not stop pickups).
	Last []string
}

// HeldByDevice locks the device row (FOR NO KEY UPDATE, serialising
// reservations on one device until tx ends) and counts its documents with
// live codes (reserved, loaded or notified).
func HeldByDevice(ctx context.Context, tx pgx.Tx, deviceID string) (int, error) {
	if _, err := tx.Exec(ctx, `SELECT 1 FROM devices WHERE id = $1 FOR NO KEY UPDATE`, deviceID); err != nil {
		return 0, fmt.Errorf("store: lock device: %w", err)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM documents WHERE device_id = $1
		AND state IN ('reserved', 'loaded', 'notified')`, deviceID).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count device documents: %w", err)
	}
	return n, nil
}

// PickCompartment locks and returns the best free compartment for p inside
// tx, skipping compartments other transactions hold (FOR UPDATE SKIP
// LOCKED), or ErrNotFound. Preference: the smallest fitting size; then,
// when Low is not asked, compartments above the low threshold first (so
// low ones stay free for those who need them); then device and number.
// With OnlineOnly only devices online now are searched; devices in Skip
// never are, devices in Last only when no other device has room (Last
// comes before the size order: a holder's pickup that works matters more
// than keeping small compartments free).
// The caller must mark it reserved before committing.
func PickCompartment(ctx context.Context, tx pgx.Tx, p Pick) (Compartment, error) {
	if !p.MinSize.Valid() {
		return Compartment{}, fmt.Errorf("pick compartment: size %q: %w", p.MinSize, ErrInvalid)
	}
	c, err := scanCompartment(tx.QueryRow(ctx, `SELECT c.id, c.device_id, c.number, c.board, c.channel, c.size, c.height_cm, c.state
		FROM compartments c JOIN devices d ON d.id = c.device_id
		WHERE c.state = 'free' AND d.site_id = $1 AND ($2 = '' OR c.device_id = $2) AND d.out_of_service_at IS NULL
		  AND (CASE c.size WHEN 'S' THEN 1 WHEN 'M' THEN 2 ELSE 3 END) >= $3
		  AND (NOT $4 OR c.height_cm <= $5)
		  AND ($6 = 0 OR (SELECT count(*) FROM documents o WHERE o.device_id = c.device_id
		                  AND o.state IN ('reserved', 'loaded', 'notified')) < $6)
		  AND (NOT $7 OR EXISTS (SELECT 1 FROM device_presence p WHERE p.device_id = c.device_id AND p.state = 'online'))
		  AND NOT c.device_id = ANY($8)
		ORDER BY c.device_id = ANY($9), (CASE c.size WHEN 'S' THEN 1 WHEN 'M' THEN 2 ELSE 3 END),
		         (NOT $4 AND c.height_cm <= $5), c.device_id, c.number
		LIMIT 1
		FOR UPDATE OF c SKIP LOCKED`, p.SiteID, p.DeviceID, p.MinSize.Rank(), p.Low, p.LowMaxHeightCM, p.MaxPerDevice, p.OnlineOnly,
		nonNil(p.Skip), nonNil(p.Last)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Compartment{}, fmt.Errorf("no free compartment: %w", ErrNotFound)
	}
	if err != nil {
		return Compartment{}, fmt.Errorf("store: pick compartment: %w", err)
	}
	return c, nil
}

// nonNil is ss, or an empty list for nil (a NULL array would make
// "= ANY" unknown and skip every row).
func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// DeviceUpdate changes a device's name, directions and layout; nil fields
// stay as they are.
type DeviceUpdate struct {
	// Name replaces the name people read on the device.
	Name *string `json:"name,omitempty"`
	// Directions replace all directions (see NewDevice.Directions).
	Directions map[string]string `json:"directions,omitempty"`
	// SetLayout replaces the layout with Layout (nil: the default grid).
	SetLayout bool    `json:"-"`
	Layout    *Layout `json:"layout,omitempty"`
}

// UpdateDevice validates u against the device and writes it; ErrNotFound
// for an unknown device, a *ValidationError for a bad field.
func UpdateDevice(ctx context.Context, db DB, id string, u DeviceUpdate) (Device, error) {
	d, err := GetDevice(ctx, db, id)
	if err != nil {
		return Device{}, err
	}
	var c checker
	name := d.Name
	if u.Name != nil {
		name = strings.TrimSpace(*u.Name)
		c.text("name", name, false, 200)
	}
	dirs := d.Directions
	if u.Directions != nil {
		dirs = map[string]string{}
		for _, l := range sortedKeys(u.Directions) {
			v := strings.TrimSpace(u.Directions[l])
			switch {
			case !ValidLanguage(l):
				c.add("directions", "language must be nl, fr, en or de, not %q", l)
			case v != "":
				c.text("directions."+l, v, false, MaxDirections)
				dirs[l] = v
			}
		}
	}
	layout := d.Layout
	if u.SetLayout {
		layout = u.Layout
		if layout != nil {
			nums := make([]int, len(d.Compartments))
			for i, cp := range d.Compartments {
				nums[i] = cp.Number
			}
			checkLayout(&c, d.Kind, layout, nums)
		}
	}
	if err := c.err(); err != nil {
		return Device{}, err
	}
	out, err := scanDevice(db.QueryRow(ctx, `UPDATE devices SET name = $2, directions = $3, layout = $4 WHERE id = $1
		RETURNING `+deviceColumns, id, name, dirs, layout))
	if err != nil {
		return Device{}, fmt.Errorf("store: update device: %w", err)
	}
	out.Compartments = d.Compartments
	return out, nil
}

// SetDeviceOutOfService takes a device out of service (out, with a
// reason) or puts it back, and reports whether anything changed (taking
// out a device that is out keeps its first time and reason).
func SetDeviceOutOfService(ctx context.Context, db DB, id string, out bool, reason string, now time.Time) (Device, bool, error) {
	var tag pgconn.CommandTag
	var err error
	if out {
		tag, err = db.Exec(ctx, `UPDATE devices SET out_of_service_at = $2, out_of_service_reason = $3
			WHERE id = $1 AND out_of_service_at IS NULL`, id, now.UTC(), reason)
	} else {
		tag, err = db.Exec(ctx, `UPDATE devices SET out_of_service_at = NULL, out_of_service_reason = ''
			WHERE id = $1 AND out_of_service_at IS NOT NULL`, id)
	}
	if err != nil {
		return Device{}, false, fmt.Errorf("store: device service: %w", err)
	}
	d, err := GetDevice(ctx, db, id)
	if err != nil {
		return Device{}, false, err
	}
	return d, tag.RowsAffected() > 0, nil
}
