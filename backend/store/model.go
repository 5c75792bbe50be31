package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"kluis/backend/lifecycle"
)

// DB is what the repository functions need: a *pgxpool.Pool or a pgx.Tx.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Site is a city hall or other place with devices.
type Site struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	TimeZone  string    `json:"time_zone"`
	Address   string    `json:"address"`
	CreatedAt time.Time `json:"created_at"`
}

// DeviceKind is "locker" (a door per compartment) or "automaton" (slots
// behind one hatch).
type DeviceKind string

// The device kinds.
const (
	Locker    DeviceKind = "locker"
	Automaton DeviceKind = "automaton"
)

// Valid reports whether k is a known kind.
func (k DeviceKind) Valid() bool { return k == Locker || k == Automaton }

// Device is a locker bank or a vending automaton.
type Device struct {
	ID     string     `json:"id"`
	SiteID string     `json:"site_id"`
	Kind   DeviceKind `json:"kind"`
	Name   string     `json:"name"`
	// Directions say, per language (nl, fr, en, de), where citizens find
	// the device and how to get there; never nil.
	Directions map[string]string `json:"directions"`
	CreatedAt  time.Time         `json:"created_at"`
	// Layout is the front as people see it (see Layout); nil: the default
	// grid.
	Layout *Layout `json:"layout"`
	// OutOfService is set while a technician has taken the device out of
	// service: it gets no new reservations.
	OutOfService *DeviceOutOfService `json:"out_of_service"`
	// Compartments is filled by GetDevice, in number order.
	Compartments []Compartment `json:"compartments,omitempty"`
}

// DeviceOutOfService says since when and why a device is out of service.
type DeviceOutOfService struct {
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
}

// Size is a compartment size, or the smallest size a document needs.
type Size string

// The sizes, smallest first.
const (
	SizeS Size = "S"
	SizeM Size = "M"
	SizeL Size = "L"
)

// Rank orders sizes: S=1, M=2, L=3, unknown 0.
func (s Size) Rank() int {
	switch s {
	case SizeS:
		return 1
	case SizeM:
		return 2
	case SizeL:
		return 3
	}
	return 0
}

// Valid reports whether s is S, M or L.
func (s Size) Valid() bool { return s.Rank() > 0 }

// Fits reports whether a compartment of size s takes an item needing need.
func (s Size) Fits(need Size) bool { return s.Valid() && s.Rank() >= need.Rank() }

// CompartmentState is a compartment's occupancy.
type CompartmentState string

// The compartment states.
const (
	CompartmentFree         CompartmentState = "free"
	CompartmentReserved     CompartmentState = "reserved"
	CompartmentLoaded       CompartmentState = "loaded"
	CompartmentOutOfService CompartmentState = "out_of_service"
)

// Compartment is one door (locker) or slot (automaton).
type Compartment struct {
	ID       int64  `json:"id"`
	DeviceID string `json:"device_id"`
	// Number is the 1-based label people see.
	Number int `json:"number"`
	// Board and Channel are the 0-based hardware address.
	Board    int              `json:"board"`
	Channel  int              `json:"channel"`
	Size     Size             `json:"size"`
	HeightCM int              `json:"height_cm"`
	State    CompartmentState `json:"state"`
}

// DocumentKind is the kind of document waiting for pickup.
type DocumentKind string

// The document kinds.
const (
	EID            DocumentKind = "eid"
	KidsID         DocumentKind = "kids_id"
	ResidenceCard  DocumentKind = "residence_card"
	Passport       DocumentKind = "passport"
	DrivingLicence DocumentKind = "driving_licence"
)

// DocumentKinds lists every kind.
func DocumentKinds() []DocumentKind {
	return []DocumentKind{EID, KidsID, ResidenceCard, Passport, DrivingLicence}
}

// Valid reports whether k is a known kind.
func (k DocumentKind) Valid() bool {
	for _, x := range DocumentKinds() {
		if x == k {
			return true
		}
	}
	return false
}

// Languages are the holder languages.
var languages = map[string]bool{"nl": true, "fr": true, "en": true, "de": true}

// ValidLanguage reports whether l is nl, fr, en or de.
func ValidLanguage(l string) bool { return languages[l] }

// Document is a document waiting for (or done with) pickup. After the
// retention purge the personal fields are empty and PurgedAt is set.
type Document struct {
	ID     string       `json:"id"`
	Kind   DocumentKind `json:"kind"`
	Number string       `json:"number,omitempty"`
	// NumberPseudonym is a keyed hash of kind and number, kept after purge.
	NumberPseudonym string          `json:"number_pseudonym,omitempty"`
	FirstName       string          `json:"holder_first_name,omitempty"`
	LastName        string          `json:"holder_last_name,omitempty"`
	BirthDate       *time.Time      `json:"holder_birth_date,omitempty"`
	Language        string          `json:"language"`
	Email           string          `json:"email,omitempty"`
	Mobile          string          `json:"mobile,omitempty"`
	WantsLow        bool            `json:"wants_low"`
	SiteID          string          `json:"site_id"`
	State           lifecycle.State `json:"state"`
	// DeviceID and CompartmentID are set from reservation on (and kept
	// afterwards as history); "" and 0 before.
	DeviceID      string     `json:"device_id,omitempty"`
	CompartmentID int64      `json:"compartment_id,omitempty"`
	Deadline      *time.Time `json:"deadline,omitempty"`
	LoadedAt      *time.Time `json:"loaded_at,omitempty"`
	NotifiedAt    *time.Time `json:"notified_at,omitempty"`
	ClosedAt      *time.Time `json:"closed_at,omitempty"`
	PurgedAt      *time.Time `json:"purged_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	// Version increases with every change.
	Version int `json:"version"`
}

// Transition is a row of a document's history.
type Transition struct {
	ID            int64            `json:"id"`
	DocumentID    string           `json:"document_id"`
	At            time.Time        `json:"at"`
	Action        lifecycle.Action `json:"action"`
	From          lifecycle.State  `json:"from"`
	To            lifecycle.State  `json:"to"`
	Actor         string           `json:"actor"`
	CompartmentID int64            `json:"compartment_id,omitempty"`
	Note          string           `json:"note,omitempty"`
}
