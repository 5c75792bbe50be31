package codes

import (
	"fmt"
	"math"
	"time"
)

// The limits below are the values docs/security.md computes its bound with;
// a test keeps them and the document in step.
const (
	// PINDigits is the length of a PIN.
	PINDigits = 9
	// MaxActiveCodesPerDevice is the most codes one device can have active at
	// once (its largest compartment count).
	MaxActiveCodesPerDevice = 48
	// CodeMaxFailures wrong dates of birth lock a code until it is re-issued.
	CodeMaxFailures = 5
	// DeviceMaxFailures failed PIN attempts within DeviceWindow lock PIN
	// entry on the device for DeviceLockout.
	DeviceMaxFailures = 5
	// DeviceWindow is the burst window.
	DeviceWindow = 15 * time.Minute
	// DeviceLockout is how long PIN entry stays locked after a burst.
	DeviceLockout = 15 * time.Minute
	// DailyMaxFailures failed PIN attempts within any DailyWindow lock PIN
	// entry until the oldest of them leaves the window.
	DailyMaxFailures = 50
	// DailyWindow is the rolling window of the daily cap.
	DailyWindow = 24 * time.Hour
	// MaxValidity is the longest a code may be valid.
	MaxValidity = 60 * 24 * time.Hour
)

// Config holds the verification policy. [DefaultConfig] gives the values the
// security analysis assumes.
type Config struct {
	// PINDigits is the PIN length (6..12).
	PINDigits int
	// CodeMaxFailures wrong dates of birth lock a code.
	CodeMaxFailures int
	// DeviceMaxFailures failures within DeviceWindow lock PIN entry for
	// DeviceLockout.
	DeviceMaxFailures int
	// DeviceWindow is the burst window.
	DeviceWindow time.Duration
	// DeviceLockout is the burst lockout.
	DeviceLockout time.Duration
	// DailyMaxFailures failures within any DailyWindow lock PIN entry.
	DailyMaxFailures int
	// DailyWindow is the rolling window of the daily cap.
	DailyWindow time.Duration
	// DOBKinds are the document kinds whose PIN needs the date of birth.
	DOBKinds map[string]bool
}

// DefaultDOBKinds are the document kinds that need the date of birth with a
// PIN: the identity documents.
func DefaultDOBKinds() map[string]bool {
	return map[string]bool{"eid": true, "kids_id": true, "residence_card": true, "passport": true}
}

// DefaultConfig returns the policy with the package constants.
func DefaultConfig() Config {
	return Config{
		PINDigits:         PINDigits,
		CodeMaxFailures:   CodeMaxFailures,
		DeviceMaxFailures: DeviceMaxFailures,
		DeviceWindow:      DeviceWindow,
		DeviceLockout:     DeviceLockout,
		DailyMaxFailures:  DailyMaxFailures,
		DailyWindow:       DailyWindow,
		DOBKinds:          DefaultDOBKinds(),
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.PINDigits == 0 {
		c.PINDigits = d.PINDigits
	}
	if c.CodeMaxFailures == 0 {
		c.CodeMaxFailures = d.CodeMaxFailures
	}
	if c.DeviceMaxFailures == 0 {
		c.DeviceMaxFailures = d.DeviceMaxFailures
	}
	if c.DeviceWindow == 0 {
		c.DeviceWindow = d.DeviceWindow
	}
	if c.DeviceLockout == 0 {
		c.DeviceLockout = d.DeviceLockout
	}
	if c.DailyMaxFailures == 0 {
		c.DailyMaxFailures = d.DailyMaxFailures
	}
	if c.DailyWindow == 0 {
		c.DailyWindow = d.DailyWindow
	}
	if c.DOBKinds == nil {
		c.DOBKinds = d.DOBKinds
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.PINDigits < 6 || c.PINDigits > 12:
		return fmt.Errorf("codes: PIN digits %d outside 6..12: %w", c.PINDigits, ErrInvalid)
	case c.CodeMaxFailures < 1, c.DeviceMaxFailures < 1, c.DailyMaxFailures < 1:
		return fmt.Errorf("codes: failure limits must be positive: %w", ErrInvalid)
	case c.DeviceWindow <= 0, c.DeviceLockout <= 0, c.DailyWindow <= 0:
		return fmt.Errorf("codes: windows must be positive: %w", ErrInvalid)
	}
	return nil
}

// NeedsDOB reports whether a PIN for a document of this kind needs the date
// of birth.
func (c Config) NeedsDOB(kind string) bool { return c.DOBKinds[kind] }

// MaxFailedGuesses is the most failed PIN attempts a device accepts within
// period: the daily cap per started DailyWindow.
func (c Config) MaxFailedGuesses(period time.Duration) int {
	windows := int(math.Ceil(float64(period) / float64(c.DailyWindow)))
	return windows * c.DailyMaxFailures
}

// BruteForceBound is the union bound on the probability that someone
// guessing PINs at one device opens any compartment within period: every
// guess hits one of at most activeCodes PINs out of 10^digits, and at most
// MaxFailedGuesses(period)+1 guesses are possible (the last one succeeds).
// The date of birth is not counted.
func (c Config) BruteForceBound(period time.Duration, activeCodes int) float64 {
	guesses := float64(c.MaxFailedGuesses(period) + 1)
	return guesses * float64(activeCodes) / math.Pow(10, float64(c.PINDigits))
}
