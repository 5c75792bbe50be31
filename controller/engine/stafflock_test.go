package engine

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
)

// A refused staff login under a lock of the device's staff logins tells
// staff which lock holds (the backend's denial carries expires, when the
// lock ends): the 15-minute lock, or the daily cap when it ends later than
// 16 minutes from now. A denial without expires (wrong credential, or an
// older backend) or with one already past is the plain refusal. Every
// language has its own text.
func TestStaffLoginRefusalNamesTheLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		for _, c := range []struct {
			name  string
			in    *time.Duration // expires from now; nil: none
			state string
			en    string
		}{
			{"wrong credential or older backend", nil, StateStaffDenied, "Login refused."},
			{"lock already over", ptr(-time.Second), StateStaffDenied, "Login refused."},
			{"burst lock", ptr(10 * time.Minute), StateStaffLocked, "Too many failed logins on this machine. Login here is blocked {t}."},
			{"burst lock made now, whole seconds", ptr(15*time.Minute + time.Second), StateStaffLocked, "Too many failed logins on this machine. Login here is blocked {t}."},
			{"daily cap", ptr(20 * time.Hour), StateStaffLockedToday,
				"Too many failed logins on this machine today. Login here is blocked {t}. Until then, use the staff console or call the service desk."},
			{"daily cap near its end", ptr(17 * time.Minute), StateStaffLockedToday, ""},
		} {
			res := wire.StaffResponse{Op: wire.StaffLogin, Result: wire.StaffDenied}
			var until time.Time
			if c.in != nil {
				until = time.Now().Add(*c.in).Truncate(time.Second)
				res.Expires = &until
			}
			r.be.set(func() { r.be.staff["login:BADGE-7"] = res })
			s, err := r.e.StaffLogin(context.Background(), "BADGE-7", "", "en")
			require.NoError(t, err)
			require.Equal(t, c.state, s.State, c.name)
			if c.en != "" {
				require.Equal(t, strings.ReplaceAll(c.en, "{t}", UntilText("en", until, time.Now())), s.Message, c.name)
			}
			if c.state != StateStaffDenied {
				require.NotNil(t, s.Until, c.name)
				require.True(t, s.Until.Equal(until), "%s: until %v, want %v", c.name, s.Until, until)
				for _, l := range langs {
					require.Contains(t, s.Messages[l], UntilText(l, until, time.Now()), "%s in %s: the lock's end", c.name, l)
					require.NotContains(t, s.Messages[l], "{t}", "%s in %s", c.name, l)
				}
			} else {
				require.Nil(t, s.Until, c.name)
			}
			seen := map[string]string{}
			for _, l := range langs {
				require.NotEmpty(t, s.Messages[l], "%s in %s", c.name, l)
				if c.state != StateStaffDenied {
					require.NotEqual(t, Message(StateStaffDenied, l, 0, 0), s.Messages[l], "%s in %s", c.name, l)
				}
				require.NotContains(t, seen, s.Messages[l], "%s: %s is %s's text", c.name, l, seen[s.Messages[l]])
				seen[s.Messages[l]] = l
			}
			r.e.mu.Lock()
			require.Nil(t, r.e.staff, "%s: no staff session", c.name)
			r.e.mu.Unlock()
		}
	})
}

func ptr(d time.Duration) *time.Duration { return &d }

// UntilText says until when a lock holds in the device's local time on
// the staff console's 24-hour clock ("17:42" in every language, not
// "17.42 uur" or "17 h 42"): today's time alone, another day's after
// its date (not "tomorrow", which a screen shown across midnight makes
// false), each after the word for "until" that fits it, the time and the
// date joined to their word by a no-break space ("om\u00a009:30": red
// before, "om 09:30" could end a line on "om"). Midnight and the turn of
// a month and a year are days like others.
func TestUntilTextInEveryLanguage(t *testing.T) {
	brussels := time.FixedZone("CET", 3600)
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, brussels)
		require.NoError(t, err)
		return v
	}
	for _, c := range []struct {
		now, until     string
		nl, fr, en, de string
	}{
		{"2026-12-06 02:59", "2026-12-06 03:15", "tot\u00a003:15", "jusqu'à\u00a003:15", "until\u00a003:15", "bis\u00a003:15"},
		// Another day by its date, not "tomorrow": the screen keeps its
		// text, and "until tomorrow at 00:05" read after midnight is a day
		// off; "until 01/01 at 00:05" stays true.
		{"2026-12-06 17:58", "2026-12-07 17:42", "tot\u00a007-12 om\u00a017:42", "jusqu'au\u00a007/12 à\u00a017:42", "until\u00a007/12 at\u00a017:42", "bis zum\u00a007.12. um\u00a017:42"},
		{"2026-12-31 23:50", "2027-01-01 00:05", "tot\u00a001-01 om\u00a000:05", "jusqu'au\u00a001/01 à\u00a000:05", "until\u00a001/01 at\u00a000:05", "bis zum\u00a001.01. um\u00a000:05"},
		// A date takes its article where the language wants one: French
		// "jusqu'au 08/12" (not "jusqu'à 08/12"), German "bis zum 08.12.".
		{"2026-12-06 10:00", "2026-12-08 09:30", "tot\u00a008-12 om\u00a009:30", "jusqu'au\u00a008/12 à\u00a009:30", "until\u00a008/12 at\u00a009:30", "bis zum\u00a008.12. um\u00a009:30"},
		{"2026-12-30 10:00", "2027-01-02 09:30", "tot\u00a002-01 om\u00a009:30", "jusqu'au\u00a002/01 à\u00a009:30", "until\u00a002/01 at\u00a009:30", "bis zum\u00a002.01. um\u00a009:30"},
	} {
		now := at(c.now)
		// The end as the backend sends it (UTC) is said in the device's time.
		until := at(c.until).UTC()
		for l, want := range map[string]string{"nl": c.nl, "fr": c.fr, "en": c.en, "de": c.de} {
			require.Equal(t, want, UntilText(l, until, now), "%s in %s", c.until, l)
		}
	}
	// In the messages: the word for "until" once, before the date.
	now, until := at("2026-12-06 10:00"), at("2026-12-08 09:30")
	for l, want := range map[string]string{
		"nl": "Aanmelden is hier geblokkeerd tot\u00a008-12 om\u00a009:30.",
		"fr": "La connexion est bloquée ici jusqu'au\u00a008/12 à\u00a009:30.",
		"en": "Login here is blocked until\u00a008/12 at\u00a009:30.",
		"de": "Die Anmeldung ist hier bis zum\u00a008.12. um\u00a009:30 gesperrt.",
	} {
		for _, st := range []string{StateStaffLocked, StateStaffLockedToday} {
			m, ok := MessageText(st, l)
			require.True(t, ok)
			require.Contains(t, strings.ReplaceAll(m, "{t}", UntilText(l, until, now)), want, "%s in %s", st, l)
		}
	}
	for _, l := range langs {
		m, _ := MessageText(StateLookupsPaused, l)
		m = strings.ReplaceAll(m, "{t}", UntilText(l, until, now))
		for _, twice := range []string{"tot tot", "jusqu'à jusqu", "until until", "bis bis"} {
			require.NotContains(t, m, twice, "%s in %s", StateLookupsPaused, l)
		}
	}
}

// The backend bounds a staff session's document lookups: a miss is
// not_found (or wrong_state, a number that exists: its own screen); the session's last miss is session_expired with expires (the
// session ended: staff are logged out and told why, lookups_ended); a
// denial with expires ahead is the device's pause (lookups_paused, until
// expires, the session goes on). A plain session_expired or denial is
// the plain refusal, as from an older backend.
func TestStaffLookupBoundsAreSaid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		exp := time.Now().Add(time.Hour)
		login := func() {
			t.Helper()
			s, err := r.e.StaffLogin(context.Background(), "BADGE-7", "", "en")
			require.NoError(t, err)
			require.Equal(t, StateStaff, s.State)
		}
		ended := time.Now().Truncate(time.Second)
		pause := time.Now().Add(40 * time.Minute).Truncate(time.Second)
		r.be.set(func() {
			r.be.staff["login:BADGE-7"] = wire.StaffResponse{Op: wire.StaffLogin, Result: wire.StaffOK, Session: "s", StaffID: "u7", StaffName: "An", Expires: &exp}
			r.be.staff["retrieve:591-0001"] = wire.StaffResponse{Result: wire.StaffNotFound}
			r.be.staff["retrieve:591-0002"] = wire.StaffResponse{Result: wire.StaffWrongState}
			r.be.staff["retrieve:591-0005"] = wire.StaffResponse{Result: wire.StaffSessionExpired, Expires: &ended}
			r.be.staff["reserve:591-0012"] = wire.StaffResponse{Result: wire.StaffDenied, Expires: &pause}
			r.be.staff["reserve:591-0013"] = wire.StaffResponse{Result: wire.StaffDenied}
			r.be.staff["reserve:591-0014"] = wire.StaffResponse{Result: wire.StaffSessionExpired}
		})
		login()
		s, err := r.e.StaffRetrieve(context.Background(), "591-0001", "en")
		require.NoError(t, err)
		require.Equal(t, StateNotFound, s.State)
		s, err = r.e.StaffRetrieve(context.Background(), "591-0002", "en")
		require.NoError(t, err)
		require.Equal(t, StateWrongState, s.State, "the document exists, not in a state to retrieve: the number is right")
		require.Equal(t, "An", s.Staff, "the session goes on")

		s, err = r.e.StaffRetrieve(context.Background(), "591-0005", "en")
		require.NoError(t, err)
		require.Equal(t, StateLookupsEnded, s.State)
		require.Equal(t, "Too many document numbers not found. For safety you are logged out. Log in again or use the staff console.", s.Message)
		require.Empty(t, s.Staff, "logged out")
		_, err = r.e.StaffRetrieve(context.Background(), "591-0001", "en")
		require.ErrorIs(t, err, ErrNoStaff)

		login()
		s, err = r.e.StaffLoad(context.Background(), "591-0012", "de")
		require.NoError(t, err)
		require.Equal(t, StateLookupsPaused, s.State)
		require.NotNil(t, s.Until)
		require.True(t, s.Until.Equal(pause))
		for _, l := range langs {
			require.Contains(t, s.Messages[l], UntilText(l, pause, time.Now()), l)
		}
		require.Equal(t, "An", s.Staff, "the session goes on")

		s, err = r.e.StaffLoad(context.Background(), "591-0013", "en")
		require.NoError(t, err)
		require.Equal(t, StateStaffDenied, s.State, "a plain denial")
		s, err = r.e.StaffLoad(context.Background(), "591-0014", "en")
		require.NoError(t, err)
		require.Equal(t, StateStaffDenied, s.State, "a plain expiry")
		require.Empty(t, s.Staff)
	})
}
