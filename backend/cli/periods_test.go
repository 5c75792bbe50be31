package cli

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/server"
	"kluis/backend/store"
)

func TestParsePickupPeriods(t *testing.T) {
	p, err := parsePickupPeriods("")
	require.NoError(t, err)
	require.Empty(t, p.days)
	require.Empty(t, p.exact)

	p, err = parsePickupPeriods(" eid=14, passport=7d ,residence_card=40s,driving_licence=48h,kids_id=1")
	require.NoError(t, err)
	require.Equal(t, map[store.DocumentKind]int{store.EID: 14, store.Passport: 7, store.KidsID: 1}, p.days)
	require.Equal(t, map[store.DocumentKind]time.Duration{store.ResidenceCard: 40 * time.Second, store.DrivingLicence: 48 * time.Hour}, p.exact)

	for in, want := range map[string]string{
		"library=3":               `entry "library=3": unknown kind "library"`,
		"eid":                     `entry "eid": want kind=days`,
		"eid=":                    `entry "eid=": want kind=days`,
		"=10":                     `entry "=10": want kind=days`,
		"eid=10,":                 `entry "": want kind=days`,
		"eid=0":                   `entry "eid=0": 0 days out of 1..58`,
		"eid=59d":                 `entry "eid=59d": 59 days out of 1..58`,
		"eid=-3":                  `entry "eid=-3": -3 days out of 1..58`,
		"eid=10x":                 `entry "eid=10x": "10x" is neither whole days`,
		"eid=1.5d":                `entry "eid=1.5d": "1.5d" is neither whole days`,
		"eid=500ms":               `entry "eid=500ms": 500ms out of 1s..60d`,
		"eid=-1h":                 `entry "eid=-1h": -1h0m0s out of 1s..60d`,
		"eid=1441h":               `entry "eid=1441h": 1441h0m0s out of 1s..60d`,
		"eid=10,passport=3,eid=2": `entry "eid=2": kind eid given twice`,
	} {
		_, err := parsePickupPeriods(in)
		require.ErrorContains(t, err, "-pickup-period "+want, in)
	}
}

func TestParseRetention(t *testing.T) {
	d, err := parseRetention("720h")
	require.NoError(t, err)
	require.Equal(t, 30*24*time.Hour, d)
	d, err = parseRetention("90s")
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, d)
	for _, in := range []string{"", "30", "30d", "0", "-1h"} {
		_, err := parseRetention(in)
		require.ErrorContains(t, err, "-retention", in)
	}
}

func TestParseDeviceRetention(t *testing.T) {
	for in, want := range map[string]time.Duration{"400d": 400 * 24 * time.Hour, " 31d ": 31 * 24 * time.Hour,
		"9600h": 9600 * time.Hour, "0": server.Disabled, "0d": server.Disabled} {
		d, err := parseDeviceRetention(in)
		require.NoError(t, err, in)
		require.Equal(t, want, d, in)
	}
	for _, in := range []string{"", "400", "forever", "-400d", "4.5d", "30d", "720h", "1s", "-1h"} {
		_, err := parseDeviceRetention(in)
		require.ErrorContains(t, err, "-device-retention", in)
	}
	_, err := parseDeviceRetention("30d")
	require.ErrorContains(t, err, `-device-retention "30d": must be at least 31d (the open alarms are read from the last 30 days), or 0 to keep them for ever`)
}

func TestParseUnclaimedRetention(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, " 7d ": 7 * 24 * time.Hour, "2160h": 2160 * time.Hour} {
		d, err := parseUnclaimedRetention(in)
		require.NoError(t, err, in)
		require.Equal(t, want, d, in)
	}
	for _, in := range []string{"", "90", "never", "-90d", "0", "0d", "6d", "1h"} {
		_, err := parseUnclaimedRetention(in)
		require.ErrorContains(t, err, "-unclaimed-retention", in)
	}
	_, err := parseUnclaimedRetention("6d")
	require.ErrorContains(t, err, `-unclaimed-retention "6d": must be at least 7d`)
}

// Bad values stop serve before it touches the database, from the flag or
// the environment, with the entry named.
func TestServeRefusesBadPeriods(t *testing.T) {
	for _, tc := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"serve", "-pickup-period", "eid=10,library=3"}, nil, `-pickup-period entry "library=3": unknown kind`},
		{[]string{"serve"}, map[string]string{"KLUIS_PICKUP_PERIOD": "eid=abc"}, `-pickup-period entry "eid=abc"`},
		{[]string{"serve", "-retention", "soon"}, nil, `-retention "soon"`},
		{[]string{"serve"}, map[string]string{"KLUIS_RETENTION": "-48h"}, `-retention "-48h": must be positive`},
		{[]string{"serve", "-unclaimed-retention", "3d"}, nil, `-unclaimed-retention "3d": must be at least 7d`},
		{[]string{"serve"}, map[string]string{"KLUIS_UNCLAIMED_RETENTION": "forever"}, `-unclaimed-retention "forever": want whole days`},
		{[]string{"serve", "-device-retention", "7d"}, nil, `-device-retention "7d": must be at least 31d`},
		{[]string{"serve"}, map[string]string{"KLUIS_DEVICE_RETENTION": "a year"}, `-device-retention "a year": want whole days`},
	} {
		vars := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"}
		for k, v := range tc.vars {
			vars[k] = v
		}
		e, _, errb := testEnv(vars)
		require.Equal(t, 1, Run(context.Background(), tc.args, e), tc.want)
		require.Contains(t, errb.String(), "kluis-backend serve: "+tc.want)
	}
}
