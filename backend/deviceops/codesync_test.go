package deviceops_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/deviceops"
	"kluis/backend/store"
	"kluis/controller/pickupcode"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// sent records the commands a CodeSync sends (the devicelink side is
// tested over MQTT in backend/server).
type sent struct {
	mu   sync.Mutex
	cmds map[string][]wire.Command
	fail bool
}

func (s *sent) SendCommand(_ context.Context, device string, cmd wire.Command) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return "", errors.New("broker down")
	}
	s.cmds[device] = append(s.cmds[device], cmd)
	return "id", nil
}

func (s *sent) to(device string) []wire.Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wire.Command(nil), s.cmds[device]...)
}

// The code sync sends a device its offline material (hashes only) as a
// full code_sync, not again while unchanged, again when it changed or got
// old, promptly after a mark, and to every device on the periodic check.
func TestCodeSyncSendsChangedBundles(t *testing.T) {
	e := newEnv(t)
	out := &sent{cmds: map[string][]wire.Command{}}
	reg := prometheus.NewRegistry()
	cs, err := deviceops.NewCodeSync(deviceops.CodeSyncOptions{Codes: e.codes, Devices: e.svc, Sender: out,
		Every: 50 * time.Millisecond, Pause: 10 * time.Millisecond, Clock: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg})
	require.NoError(t, err)

	doc, cr := e.loaded(store.EID, "591-1234567-89", "k1")
	require.True(t, cs.Sync(e.ctx, "k1"))
	cmds := out.to("k1")
	require.Len(t, cmds, 1)
	c := cmds[0]
	require.Equal(t, wire.CmdCodeSync, c.Kind)
	require.True(t, c.Codes.Full)
	require.Equal(t, t0.UnixNano(), c.Codes.Version, "the version is the injected clock's")
	require.Len(t, c.Codes.Entries, 1)
	en := c.Codes.Entries[0]
	require.Equal(t, doc.ID, en.DocumentID)
	require.Equal(t, wire.Address{Board: 0, Channel: 0}, en.Addr)
	require.Equal(t, pickupcode.QRHash(cr.CodeID), en.QRHash)
	require.True(t, strings.HasPrefix(en.PINHash, "argon2id$t=1,m=64,p=1$"), en.PINHash)
	require.True(t, en.SecondFactor)
	require.NotContains(t, en.PINHash, cr.PIN)
	c.ID, c.Issued, c.Expires = "c1", t0, t0.Add(time.Minute) // as devicelink fills them in
	_, err = wire.Encode(&c)
	require.NoError(t, err, "the command is valid on the wire")

	require.False(t, cs.Sync(e.ctx, "k1"), "unchanged: not sent again")
	e.clock.Add(deviceops.DefaultCodeSyncRefresh)
	require.True(t, cs.Sync(e.ctx, "k1"), "unchanged but old: sent again")

	// A failed send is retried by the next sync.
	_, _ = e.loaded(store.DrivingLicence, "B1234567", "k1")
	out.mu.Lock()
	out.fail = true
	out.mu.Unlock()
	require.False(t, cs.Sync(e.ctx, "k1"))
	out.mu.Lock()
	out.fail = false
	out.mu.Unlock()
	require.True(t, cs.Sync(e.ctx, "k1"))
	require.Len(t, out.to("k1")[2].Codes.Entries, 2)
	require.Equal(t, 3.0, syncCount(t, reg, "sent"))
	require.Equal(t, 1.0, syncCount(t, reg, "failed"))

	// Issuing through the wrapped issuer marks the device; Run syncs it.
	iss := cs.Issuer(codes.Issuer{Service: e.codes})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- cs.Run(ctx) }()
	d2, _ := e.loaded(store.Passport, "EP1234567", "k2")
	require.Empty(t, out.to("k2"), "the plain issuer marks nothing")
	require.NoError(t, pgx.BeginFunc(e.ctx, e.st.Pool(), func(tx pgx.Tx) error {
		comp, err := store.GetCompartment(e.ctx, tx, d2.CompartmentID)
		if err != nil {
			return err
		}
		_, err = iss.Issue(e.ctx, tx, d2, comp)
		return err
	}))
	testenv.Eventually(t, "k2's sync", func() bool { return len(out.to("k2")) > 0 })
	require.Equal(t, d2.ID, out.to("k2")[0].Codes.Entries[0].DocumentID)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	_, err = deviceops.NewCodeSync(deviceops.CodeSyncOptions{Codes: e.codes, Devices: e.svc})
	require.Error(t, err, "a sender is required")
}

func syncCount(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "kluis_code_syncs_total" && m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no kluis_code_syncs_total{result=%q}", result)
	return 0
}
