package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"kluis/backend/alarms"
	"kluis/backend/devicelink"
	"kluis/backend/server"
	"kluis/backend/service"
	"kluis/backend/store"
)

// pickupPeriods is the parsed -pickup-period flag: whole days or exact
// durations per document kind.
type pickupPeriods struct {
	days  map[store.DocumentKind]int
	exact map[store.DocumentKind]time.Duration
}

// parsePickupPeriods parses a comma list of kind=value, where value is whole
// days ("10" or "10d": the deadline is the end of the N-th local day after
// loading) or a Go duration ("90s", "48h": load time plus the duration).
func parsePickupPeriods(s string) (pickupPeriods, error) {
	p := pickupPeriods{days: map[store.DocumentKind]int{}, exact: map[store.DocumentKind]time.Duration{}}
	if strings.TrimSpace(s) == "" {
		return p, nil
	}
	seen := map[store.DocumentKind]bool{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		kindStr, val, ok := strings.Cut(entry, "=")
		kind, val := store.DocumentKind(strings.TrimSpace(kindStr)), strings.TrimSpace(val)
		fail := func(format string, args ...any) error {
			return fmt.Errorf("-pickup-period entry %q: %s", entry, fmt.Sprintf(format, args...))
		}
		switch {
		case !ok || kind == "" || val == "":
			return p, fail("want kind=days (10, 10d) or kind=duration (90s, 48h)")
		case !kind.Valid():
			return p, fail("unknown kind %q (want one of %s)", kind, kindList())
		case seen[kind]:
			return p, fail("kind %s given twice", kind)
		}
		seen[kind] = true
		if n, err := strconv.Atoi(strings.TrimSuffix(val, "d")); err == nil {
			if n < 1 || n > service.MaxPickupDays {
				return p, fail("%d days out of 1..%d", n, service.MaxPickupDays)
			}
			p.days[kind] = n
			continue
		}
		d, err := time.ParseDuration(val)
		if err != nil {
			return p, fail("%q is neither whole days (10, 10d) nor a Go duration (90s, 48h)", val)
		}
		if d < time.Second || d > service.MaxPickupPeriod {
			return p, fail("%s out of 1s..%dd", d, service.MaxPickupPeriod/(24*time.Hour))
		}
		p.exact[kind] = d
	}
	return p, nil
}

func kindList() string {
	var ks []string
	for _, k := range store.DocumentKinds() {
		ks = append(ks, string(k))
	}
	return strings.Join(ks, ", ")
}

// parseRetention parses the -retention flag: a positive Go duration.
func parseRetention(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("-retention %q: want a Go duration such as 720h", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("-retention %q: must be positive", s)
	}
	return d, nil
}

// parseDeviceRetention parses the -device-retention flag: whole days
// ("400d") or a Go duration, at least devicelink.MinRetention; 0 (or
// "0d") keeps device events and commands for ever (server.Disabled).
func parseDeviceRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	d, ok := daysOrDuration(s)
	if !ok {
		return 0, fmt.Errorf("-device-retention %q: want whole days such as 400d or a Go duration such as 9600h", s)
	}
	switch {
	case d == 0:
		return server.Disabled, nil
	case d < devicelink.MinRetention:
		return 0, fmt.Errorf("-device-retention %q: must be at least %dd (the open alarms are read from the last %d days), or 0 to keep them for ever",
			s, devicelink.MinRetention/(24*time.Hour), alarms.Window/(24*time.Hour))
	}
	return d, nil
}

// daysOrDuration parses whole days ("90d", at most 100 years) or a Go
// duration; false when s is neither or negative.
func daysOrDuration(s string) (time.Duration, bool) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*366 {
			return 0, false
		}
		return time.Duration(n) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d >= 0
}

// parseUnclaimedRetention parses the -unclaimed-retention flag: whole days
// ("90d") or a Go duration, at least service.MinUnclaimedRetention.
func parseUnclaimedRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	d, ok := daysOrDuration(s)
	if !ok {
		return 0, fmt.Errorf("-unclaimed-retention %q: want whole days such as 90d or a Go duration such as 2160h", s)
	}
	if d < service.MinUnclaimedRetention {
		return 0, fmt.Errorf("-unclaimed-retention %q: must be at least %dd", s, service.MinUnclaimedRetention/(24*time.Hour))
	}
	return d, nil
}
