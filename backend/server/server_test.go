package server_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/pgtest"
	"kluis/backend/server"
	"kluis/backend/server/servertest"
	"kluis/deploy/dev/testenv"
)

func TestNewRefusesWhatCannotWork(t *testing.T) {
	k, err := codes.GenerateKeys()
	require.NoError(t, err)
	for _, tc := range []struct {
		o    server.Options
		want string
	}{
		{server.Options{Keys: k}, "no database URL"},
		{server.Options{DatabaseURL: "postgres://x"}, "signing key"},
		{server.Options{DatabaseURL: "postgres://x", Keys: k, CodeGrace: -time.Second}, "code grace -1s is negative"},
		{server.Options{DatabaseURL: "postgres://x", Keys: k, HousekeepEvery: -time.Minute}, "housekeeping interval -1m0s is negative"},
	} {
		_, err := server.New(tc.o)
		require.ErrorContains(t, err, tc.want)
	}
	s, err := server.New(server.Options{DatabaseURL: "postgres://x", Keys: k, HousekeepEvery: server.Disabled})
	require.NoError(t, err)
	require.Empty(t, s.HTTPAddr(), "nothing listens before Run")
}

// Jobs set to Disabled do not run: no audit gauge, no reminder passes;
// the rest of the server works. Run refuses a second call.
func TestDisabledJobs(t *testing.T) {
	s := startBackend(t, server.Options{AuditEvery: 0, HousekeepEvery: server.Disabled, CodeSyncEvery: server.Disabled,
		RearmUnfollowed: server.Disabled})
	m := s.metrics()
	require.Contains(t, m, "kluis_audit_chain_ok 1", "the default audit watcher")
	require.NotContains(t, m, "kluis_reminder_passes_total", "no reminders without housekeeping")
	require.ErrorContains(t, s.Run(context.Background()), "Run called twice")

	s2 := startBackend(t, server.Options{AuditEvery: server.Disabled})
	require.NotContains(t, s2.metrics(), "kluis_audit_chain_ok")
	require.Contains(t, s2.metrics(), `kluis_reminder_passes_total{result="done"}`)
}

// A server that cannot listen stops with the reason and leaves nothing
// behind: its embedded broker's port is free again.
func TestRunFailsCleanlyWhenItCannotListen(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	brokerAddr := testenv.FreeAddr(t)

	k, err := codes.GenerateKeys()
	require.NoError(t, err)
	log := &servertest.SyncBuffer{}
	s, err := server.New(server.Options{DatabaseURL: pgtest.NewDatabase(t), Keys: k, HTTPAddr: taken.Addr().String(),
		MQTTAddr: brokerAddr, SlipDir: t.TempDir(), AdminPassword: "a long admin password", Console: log,
		Logger: slog.New(slog.NewTextHandler(log, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = s.Run(ctx)
	require.ErrorContains(t, err, "listen on "+taken.Addr().String())
	again, err := net.Listen("tcp", brokerAddr)
	require.NoError(t, err, "the embedded broker was closed")
	again.Close()
	require.NotContains(t, log.String(), "with password", "the admin password was given, not generated")
}
