package lifecycle_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/backend/lifecycle"
)

// want is written out independently of the package's table: every allowed
// (state, action) pair and its result. Anything absent must be refused.
var want = map[lifecycle.State]map[lifecycle.Action]lifecycle.State{
	lifecycle.Registered: {lifecycle.Reserve: lifecycle.Reserved, lifecycle.Cancel: lifecycle.Cancelled},
	lifecycle.Reserved: {
		lifecycle.Unreserve: lifecycle.Registered, lifecycle.Load: lifecycle.Loaded,
		lifecycle.Cancel: lifecycle.Cancelled,
	},
	lifecycle.Loaded: {
		lifecycle.Notify: lifecycle.Notified, lifecycle.Collect: lifecycle.Collected,
		lifecycle.Expire: lifecycle.Expired, lifecycle.Retrieve: lifecycle.Retrieved,
		lifecycle.Reissue: lifecycle.Loaded,
	},
	lifecycle.Notified: {
		lifecycle.Renotify: lifecycle.Notified, lifecycle.Collect: lifecycle.Collected,
		lifecycle.Expire: lifecycle.Expired, lifecycle.Retrieve: lifecycle.Retrieved,
		lifecycle.Reissue: lifecycle.Notified,
	},
	lifecycle.Expired:   {lifecycle.Collect: lifecycle.Collected, lifecycle.Retrieve: lifecycle.Retrieved},
	lifecycle.Collected: {},
	lifecycle.Retrieved: {},
	lifecycle.Cancelled: {},
}

func TestEveryStateActionPair(t *testing.T) {
	require.Len(t, lifecycle.States(), 8)
	require.Len(t, lifecycle.Actions(), 10)
	allowed := 0
	for _, s := range lifecycle.States() {
		require.Contains(t, want, s)
		for _, a := range lifecycle.Actions() {
			to, err := lifecycle.Check(s, a)
			if exp, ok := want[s][a]; ok {
				allowed++
				require.NoError(t, err, "%s from %s", a, s)
				require.Equal(t, exp, to, "%s from %s", a, s)
				continue
			}
			require.Error(t, err, "%s from %s must be refused", a, s)
			require.True(t, errors.Is(err, lifecycle.ErrForbiddenTransition), "%s from %s: %v", a, s, err)
			require.Equal(t, "cannot "+string(a)+" a document that is "+string(s), err.Error())
			var te *lifecycle.TransitionError
			require.True(t, errors.As(err, &te))
			require.Equal(t, s, te.From)
			require.Equal(t, a, te.Action)
			require.Empty(t, to)
		}
	}
	require.Len(t, lifecycle.Transitions(), allowed)
}

func TestCollectRegisteredMessage(t *testing.T) {
	_, err := lifecycle.Check(lifecycle.Registered, lifecycle.Collect)
	require.EqualError(t, err, "cannot collect a document that is registered")
}

func TestUnknownValues(t *testing.T) {
	_, err := lifecycle.Check("lost", lifecycle.Collect)
	require.ErrorIs(t, err, lifecycle.ErrUnknownState)
	_, err = lifecycle.Check(lifecycle.Loaded, "steal")
	require.ErrorIs(t, err, lifecycle.ErrUnknownAction)
	_, err = lifecycle.Check("", "")
	require.ErrorIs(t, err, lifecycle.ErrUnknownState)
}

func TestFinalAndOccupies(t *testing.T) {
	for _, s := range lifecycle.States() {
		require.Equal(t, len(want[s]) == 0, s.Final(), "final %s", s)
		require.Equal(t, len(lifecycle.Allowed(s)), len(want[s]))
	}
	occ := map[lifecycle.State]bool{lifecycle.Reserved: true, lifecycle.Loaded: true, lifecycle.Notified: true, lifecycle.Expired: true}
	for _, s := range lifecycle.States() {
		require.Equal(t, occ[s], s.Occupies(), "occupies %s", s)
	}
	require.ElementsMatch(t, []lifecycle.State{lifecycle.Registered, lifecycle.Reserved}, lifecycle.From(lifecycle.Cancel))
}

// Where a document is, by state: in its compartment when loaded, notified
// or expired (exactly the states a retrieve takes it out of), each
// occupying the compartment (a reserved one occupies it, not yet in it);
// awaiting its holder when loaded or notified (exactly the states it can
// expire from and be reissued in), each in the compartment.
func TestInCompartmentAndAwaitsHolder(t *testing.T) {
	var in, awaits []lifecycle.State
	for _, s := range lifecycle.States() {
		if s.InCompartment() {
			in = append(in, s)
			require.True(t, s.Occupies(), "%s is in a compartment it does not occupy", s)
		}
		if s.AwaitsHolder() {
			awaits = append(awaits, s)
			require.True(t, s.InCompartment(), "%s awaits its holder outside a compartment", s)
		}
	}
	require.ElementsMatch(t, []lifecycle.State{lifecycle.Loaded, lifecycle.Notified, lifecycle.Expired}, in)
	require.ElementsMatch(t, in, lifecycle.From(lifecycle.Retrieve))
	require.False(t, lifecycle.State("").InCompartment())
	require.ElementsMatch(t, []lifecycle.State{lifecycle.Loaded, lifecycle.Notified}, awaits)
	require.ElementsMatch(t, awaits, lifecycle.From(lifecycle.Expire))
	require.ElementsMatch(t, awaits, lifecycle.From(lifecycle.Reissue))
}

func TestTransitionsIsACopy(t *testing.T) {
	ts := lifecycle.Transitions()
	ts[0].To = lifecycle.Cancelled
	to, err := lifecycle.Check(lifecycle.Registered, lifecycle.Reserve)
	require.NoError(t, err)
	require.Equal(t, lifecycle.Reserved, to)
}

// TestDocTableMatchesCode keeps the table in doc.go true.
func TestDocTableMatchesCode(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	var doc []lifecycle.Transition
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "//"))
		if len(f) != 3 || !lifecycle.State(f[0]).Valid() {
			continue
		}
		doc = append(doc, lifecycle.Transition{From: lifecycle.State(f[0]), Action: lifecycle.Action(f[1]), To: lifecycle.State(f[2])})
	}
	require.ElementsMatch(t, lifecycle.Transitions(), doc)
}
