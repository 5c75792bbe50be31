package pgpair

import (
	"context"
	"kluis/deploy/dev/testenv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Every commit the primary acknowledged is on the standby when it takes
// over, and a pool on the multi-host URL finds the new primary by itself.
func TestFailoverKeepsAcknowledgedCommits(t *testing.T) {
	p := Start(t)
	p.CreateDatabase("kluis")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, p.URL("kluis"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE TABLE acked (n int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		if _, err := pool.Exec(ctx, "INSERT INTO acked VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	p.KillPrimary()
	p.Promote()
	if _, err := testenv.Poll(ctx, 30*time.Second, "a write after the failover", func(ctx context.Context) (bool, string, error) {
		_, err := pool.Exec(ctx, "INSERT INTO acked VALUES ($1)", n)
		return err == nil, "", err
	}); err != nil {
		t.Fatalf("%v\n%s", err, p.Log("standby"))
	}
	var got int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM acked").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != n+1 {
		t.Fatalf("%d rows after the failover, want %d", got, n+1)
	}
	var port int
	if err := pool.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port); err != nil || port != p.StandbyPort {
		t.Fatalf("pool on port %d (%v), want the promoted standby's %d", port, err, p.StandbyPort)
	}
}
