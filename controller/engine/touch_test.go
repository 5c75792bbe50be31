package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
)

// TestTouchPutsTheIdleReturnOffWithinTheCap: a citizen still typing the
// date of birth (activity reported by the page, Touch) keeps the screen
// past timeouts.session (2 min), each touch for timeouts.session from
// then; left alone after the last touch it goes back to idle
// timeouts.session later; touching without end holds it SessionCap after
// it came, no longer; activity for an older screen or on idle changes
// nothing.
func TestTouchPutsTheIdleReturnOffWithinTheCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, rigOpts{caps: sensors})
		defer r.stop()
		r.be.set(func() {
			r.be.verify["123456789/"] = wire.VerifyResponse{Result: wire.VerifySecondFactorRequired}
		})
		session := r.cfg.Timeouts.Session
		require.Equal(t, 2*time.Minute, session)
		birth := func() Screen {
			t.Helper()
			s, err := r.e.Pickup(context.Background(), PickupRequest{PIN: "123456789"})
			require.NoError(t, err)
			require.Equal(t, StateNeedBirthDate, s.State)
			return s
		}

		// Slow typing: a touch every 90 s for 6 minutes.
		s := birth()
		came := s.At
		require.Equal(t, came.Add(session), *r.e.Screen().IdleUntil)
		for i := 0; i < 4; i++ {
			time.Sleep(90 * time.Second)
			got := r.e.Touch(s.Seq)
			require.Equal(t, StateNeedBirthDate, got.State, "touch %d", i)
			require.Equal(t, s.Seq, got.Seq)
			require.Equal(t, time.Now().UTC().Add(session), *got.IdleUntil)
			require.False(t, got.IdleFinal)
		}
		// Left alone: back to idle timeouts.session after the last touch.
		time.Sleep(session - time.Second)
		require.Equal(t, StateNeedBirthDate, r.e.Screen().State)
		time.Sleep(2 * time.Second)
		require.Equal(t, StateIdle, r.e.Screen().State)
		// A touch reported for the screen just ended brings nothing back.
		idle := r.e.Touch(s.Seq)
		require.Equal(t, StateIdle, idle.State)
		require.Nil(t, idle.IdleUntil)
		require.Equal(t, StateIdle, r.e.Touch(idle.Seq).State)

		// A stuck touch: every 10 s, the screen still ends SessionCap
		// after it came.
		s = birth()
		came = s.At
		final := false
		for time.Now().Before(came.Add(SessionCap)) {
			got := r.e.Touch(s.Seq)
			require.Equal(t, StateNeedBirthDate, got.State, "at %s", time.Now().Sub(came))
			require.False(t, got.IdleUntil.After(came.Add(SessionCap)))
			final = got.IdleFinal
			time.Sleep(10 * time.Second)
		}
		require.True(t, final, "idle_final before the cap")
		time.Sleep(time.Second)
		require.Equal(t, StateIdle, r.e.Touch(s.Seq).State)

		// Activity for an earlier screen does not hold the one shown.
		old := birth()
		s = birth()
		require.NotEqual(t, old.Seq, s.Seq)
		time.Sleep(session / 2)
		got := r.e.Touch(old.Seq)
		require.Equal(t, s.At.Add(session), *got.IdleUntil)
		time.Sleep(session/2 + time.Second)
		require.Equal(t, StateIdle, r.e.Screen().State)
	})
}
