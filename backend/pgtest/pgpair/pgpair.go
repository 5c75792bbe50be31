// Package pgpair makes a private PostgreSQL primary and a streaming,
// synchronous standby for a failover test: initdb, pg_basebackup -R and
// two postmasters on free loopback ports under a temporary directory, run
// as the postgres user when the test runs as root. The primary has
// synchronous_standby_names = '*' and synchronous_commit = on, so a
// commit the primary acknowledged is on the standby too. KillPrimary
// kills the primary's whole process group (SIGKILL, like a lost machine);
// Promote makes the standby the new primary; Rebuild then makes a new
// synchronous standby of it in the dead primary's place (a new machine
// from a fresh base backup), so that a long test can fail over again and
// again. Nothing touches the system PostgreSQL.
package pgpair

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kluis/deploy/dev/testenv"

	"github.com/jackc/pgx/v5"
)

// BinDir is where the PostgreSQL server binaries are looked for first
// (KLUIS_PG_BIN overrides it).
const BinDir = "/usr/lib/postgresql/15/bin"

// Pair is a primary and its standby.
type Pair struct {
	t    testing.TB
	bin  string
	dir  string
	cred *syscall.Credential
	// PrimaryPort and StandbyPort are the loopback ports of the current
	// primary and standby (Promote and Rebuild swap them).
	PrimaryPort, StandbyPort int
	primary, standby         *exec.Cmd
	// primaryDir and standbyDir are the data directories' names under
	// dir (their logs are name.log); nodes counts the ones made.
	primaryDir, standbyDir string
	nodes                  int
	// promoted: Promote ran and no Rebuild since.
	promoted bool
}

// Start makes and starts the pair and waits until the standby streams
// synchronously; it skips t when the PostgreSQL binaries are missing. The
// processes are killed and the directory removed when t ends.
func Start(t testing.TB) *Pair {
	t.Helper()
	bin := os.Getenv("KLUIS_PG_BIN")
	if bin == "" {
		bin = BinDir
	}
	if _, err := os.Stat(filepath.Join(bin, "pg_basebackup")); err != nil {
		t.Skipf("pgpair: no PostgreSQL server binaries in %s (KLUIS_PG_BIN)", bin)
	}
	dir, err := os.MkdirTemp("", "kluis-pgpair-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Pair{t: t, bin: bin, dir: dir, PrimaryPort: testenv.FreePort(t), StandbyPort: testenv.FreePort(t),
		primaryDir: "primary", standbyDir: "standby"}
	t.Cleanup(func() {
		p.kill(p.primary)
		p.kill(p.standby)
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		// initdb refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgpair: running as root needs a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	primary := filepath.Join(dir, p.primaryDir)
	p.run("initdb", "-D", primary, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
wal_level = replica
max_wal_senders = 5
hot_standby = on
synchronous_commit = on
synchronous_standby_names = '*'
fsync = on
max_connections = 60
shared_buffers = 32MB
log_min_messages = warning
`, p.PrimaryPort, dir)
	appendFile(t, filepath.Join(primary, "postgresql.auto.conf"), conf)
	appendFile(t, filepath.Join(primary, "pg_hba.conf"), "host replication postgres 127.0.0.1/32 trust\n")
	p.primary = p.start(p.primaryDir, p.PrimaryPort)
	p.standby = p.baseBackup(p.standbyDir, p.StandbyPort)
	p.waitSync()
	return p
}

// baseBackup makes data directory name a streaming standby of the
// current primary (pg_basebackup -R), listening on port, and starts it.
func (p *Pair) baseBackup(name string, port int) *exec.Cmd {
	p.t.Helper()
	d := filepath.Join(p.dir, name)
	p.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.PrimaryPort), "-U", "postgres", "-D", d, "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
	appendFile(p.t, filepath.Join(d, "postgresql.auto.conf"), fmt.Sprintf("port = %d\n", port))
	return p.start(name, port)
}

// URL is a multi-host URL of the pair for database db with
// target_session_attrs=read-write: clients find whichever is primary.
func (p *Pair) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write&connect_timeout=3",
		p.PrimaryPort, p.StandbyPort, db)
}

// PrimaryURL is the primary alone (database db).
func (p *Pair) PrimaryURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.PrimaryPort, db)
}

// StandbyURL is the standby alone (database db).
func (p *Pair) StandbyURL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.StandbyPort, db)
}

// CreateDatabase creates db on the primary.
func (p *Pair) CreateDatabase(db string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.PrimaryURL("postgres"))
	if err != nil {
		p.t.Fatalf("pgpair: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		p.t.Fatalf("pgpair: create database: %v", err)
	}
}

// KillPrimary kills the primary's postmaster and every backend of it
// (SIGKILL to its process group) and waits for the postmaster to exit.
func (p *Pair) KillPrimary() {
	p.kill(p.primary)
}

// Promote makes the standby a primary (pg_ctl promote -w) and then, as a
// failover manager does when no standby is left (Patroni's
// synchronous_mode without synchronous_mode_strict), turns synchronous
// replication off on it: it inherited synchronous_standby_names = '*'
// from the primary's base backup and would otherwise wait for ever for a
// standby at every commit.
//
// After Promote the standby is the primary: PrimaryPort and StandbyPort
// are swapped (StandbyPort names the dead machine until Rebuild).
func (p *Pair) Promote() {
	p.t.Helper()
	if p.promoted {
		p.t.Fatal("pgpair: Promote twice without Rebuild: there is no standby")
	}
	p.run("pg_ctl", "promote", "-w", "-t", "30", "-D", filepath.Join(p.dir, p.standbyDir))
	p.setSync(p.StandbyPort, "")
	p.primary, p.standby = p.standby, p.primary
	p.primaryDir, p.standbyDir = p.standbyDir, p.primaryDir
	p.PrimaryPort, p.StandbyPort = p.StandbyPort, p.PrimaryPort
	p.promoted = true
}

// Rebuild replaces the dead former primary after KillPrimary and Promote
// by a new synchronous standby of the current primary, on the same port
// (a new machine in the lost one's place, from a fresh base backup), and
// waits until it streams synchronously: the pair can fail over again.
func (p *Pair) Rebuild() {
	p.t.Helper()
	if !p.promoted {
		p.t.Fatal("pgpair: Rebuild without Promote")
	}
	p.kill(p.standby) // the dead machine, should it still run
	old := filepath.Join(p.dir, p.standbyDir)
	if err := os.RemoveAll(old); err != nil {
		p.t.Fatalf("pgpair: %v", err)
	}
	p.nodes++
	p.standbyDir = fmt.Sprintf("node%d", p.nodes)
	p.standby = p.baseBackup(p.standbyDir, p.StandbyPort)
	p.setSync(p.PrimaryPort, "*")
	p.waitSync()
	p.promoted = false
}

// setSync sets synchronous_standby_names on the server at port.
func (p *Pair) setSync(port int, names string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
	if err != nil {
		p.t.Fatalf("pgpair: %v", err)
	}
	defer c.Close(context.Background())
	for _, q := range []string{"ALTER SYSTEM SET synchronous_standby_names = '" + names + "'", "SELECT pg_reload_conf()"} {
		if _, err := c.Exec(ctx, q); err != nil {
			p.t.Fatalf("pgpair: %s: %v", q, err)
		}
	}
}

func (p *Pair) kill(c *exec.Cmd) {
	if c == nil || c.Process == nil || c.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	_ = c.Wait()
}

func (p *Pair) command(name string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(p.bin, name), args...)
	c.Dir = p.dir
	c.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC"}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	return c
}

func (p *Pair) run(name string, args ...string) {
	p.t.Helper()
	out, err := p.command(name, args...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("pgpair: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// start runs postgres on data directory name (its log in name.log) and
// waits until it accepts connections on port.
func (p *Pair) start(name string, port int) *exec.Cmd {
	p.t.Helper()
	d := filepath.Join(p.dir, name)
	logf, err := os.Create(filepath.Join(p.dir, name+".log"))
	if err != nil {
		p.t.Fatal(err)
	}
	c := p.command("postgres", "-D", d)
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		p.t.Fatalf("pgpair: start %s: %v", name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return c
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(p.dir, name+".log"))
			p.t.Fatalf("pgpair: %s does not accept connections: %v\n%s", name, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSync waits until the primary sees its standby as synchronous.
func (p *Pair) waitSync() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.PrimaryURL("postgres"))
	if err != nil {
		p.t.Fatalf("pgpair: %v", err)
	}
	defer c.Close(context.Background())
	for {
		var n int
		err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync' AND state = 'streaming'").Scan(&n)
		if err == nil && n == 1 {
			return
		}
		select {
		case <-ctx.Done():
			p.t.Fatalf("pgpair: the standby never became synchronous (%v)", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Log returns the server log of the current "primary" or "standby".
func (p *Pair) Log(role string) string {
	name := p.primaryDir
	if role == "standby" {
		name = p.standbyDir
	}
	b, _ := os.ReadFile(filepath.Join(p.dir, name+".log"))
	return string(b)
}

// Available reports why Start would skip (no PostgreSQL server binaries),
// or nil: a caller that can go on without a pair asks first.
func Available() error {
	bin := os.Getenv("KLUIS_PG_BIN")
	if bin == "" {
		bin = BinDir
	}
	if _, err := os.Stat(filepath.Join(bin, "pg_basebackup")); err != nil {
		return fmt.Errorf("pgpair: no PostgreSQL server binaries in %s (KLUIS_PG_BIN): %w", bin, err)
	}
	return nil
}

func appendFile(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
