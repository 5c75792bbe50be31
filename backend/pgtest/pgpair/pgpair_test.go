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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	// Two failovers: the second one after Rebuild made a new standby in
	// the first primary's place.
	rows := n
	for round := 1; round <= 2; round++ {
		standby := p.StandbyPort
		p.KillPrimary()
		p.Promote()
		if p.PrimaryPort != standby {
			t.Fatalf("round %d: PrimaryPort %d after Promote, want the standby's %d", round, p.PrimaryPort, standby)
		}
		if _, err := testenv.Poll(ctx, 30*time.Second, "a write after the failover", func(ctx context.Context) (bool, string, error) {
			_, err := pool.Exec(ctx, "INSERT INTO acked VALUES ($1)", rows)
			return err == nil, "", err
		}); err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, p.Log("primary"))
		}
		rows++
		var got int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM acked").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != rows {
			t.Fatalf("round %d: %d rows after the failover, want %d", round, got, rows)
		}
		var port int
		if err := pool.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port); err != nil || port != standby {
			t.Fatalf("round %d: pool on port %d (%v), want the promoted standby's %d", round, port, err, standby)
		}
		if round == 1 {
			p.Rebuild()
			// The new standby is synchronous: what the primary acknowledges
			// from now on survives the next failover.
			for i := range 50 {
				if _, err := pool.Exec(ctx, "INSERT INTO acked VALUES ($1)", rows+i); err != nil {
					t.Fatal(err)
				}
			}
			rows += 50
		}
	}
}
