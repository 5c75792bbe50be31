// Package mosquittotest runs a private Mosquitto process for a test: a
// generated configuration in a temporary directory, a free loopback port
// (and a second one for a TLS listener), optional password and ACL files,
// and Kill/Start to simulate a broker crash and restart. It never touches
// the system broker. NewCerts makes a CA and a broker certificate for the
// TLS listener. Outside a test (kluis-bench), Launch runs the same broker
// and returns errors instead.
package mosquittotest

import (
	"bufio"
	"fmt"
	"kluis/deploy/dev/testenv"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Options describe the broker to run.
type Options struct {
	// Config is a mosquitto.conf text. Its listener, password_file,
	// acl_file, persistence_location, log_dest and user lines are
	// rewritten for the temporary directory and port; commented lines are
	// kept as they are. Empty means an anonymous broker without
	// persistence.
	Config string
	// Users are user names and passwords written to the password file
	// (in clear, then hashed by one mosquitto_passwd -U).
	Users map[string]string
	// ACL is the acl_file content, if any.
	ACL string
	// TLS, when set, replaces the cafile, certfile and keyfile lines of
	// the configuration's second listener (its TLS listener, which gets a
	// port of its own: TLSURL).
	TLS *Certs
	// NoFile, when set, is the broker's open-file limit (RLIMIT_NOFILE,
	// soft and hard; at most the hard limit unless run as root): one
	// descriptor per client.
	NoFile uint64
	// Nice, when not 0, is the broker's scheduling niceness (-20..19; below
	// 0 needs root): Mosquitto serves every client from one thread, and a
	// benchmark on a shared machine may give it its own share of a core.
	Nice int
}

// Process is one running (or stopped) Mosquitto.
type Process struct {
	t       testing.TB
	dir     string
	conf    string
	port    int
	tlsPort int
	hasTLS  bool
	noFile  uint64
	nice    int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
}

// Binary is the mosquitto executable looked for.
const Binary = "mosquitto"

// Start writes the configuration and starts Mosquitto; it fails t when the
// broker does not listen within 10 s. The process is killed when t ends.
func Start(t testing.TB, o Options) *Process {
	t.Helper()
	port, tlsPort := testenv.FreePort(t), testenv.FreePort(t)
	p, err := prepare(t.TempDir(), o, port, tlsPort)
	if err != nil {
		t.Fatalf("mosquittotest: %v", err)
	}
	p.t = t
	t.Cleanup(p.Kill)
	p.Start()
	return p
}

// Launch is Start outside a test: the files go to a new directory under
// parent ("" for the temporary directory), the broker is started and
// listens when Launch returns. Close kills it and removes the directory.
func Launch(parent string, o Options) (_ *Process, err error) {
	var ports [2]int
	for i := range ports {
		a, err := testenv.PickAddr()
		if err != nil {
			return nil, fmt.Errorf("mosquittotest: %w", err)
		}
		_, ps, _ := net.SplitHostPort(a)
		fmt.Sscan(ps, &ports[i])
	}
	dir, err := os.MkdirTemp(parent, "mosquitto-")
	if err != nil {
		return nil, fmt.Errorf("mosquittotest: %w", err)
	}
	p, err := prepare(dir, o, ports[0], ports[1])
	if err == nil {
		err = p.Run()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// Close kills the broker and removes its directory (a Launch's).
func (p *Process) Close() {
	p.Kill()
	os.RemoveAll(p.dir)
}

// prepare writes the configuration, password and ACL files into dir.
func prepare(dir string, o Options, port, tlsPort int) (*Process, error) {
	if _, err := exec.LookPath(Binary); err != nil {
		return nil, err
	}
	p := &Process{dir: dir, port: port, tlsPort: tlsPort, hasTLS: o.TLS != nil, noFile: o.NoFile, nice: o.Nice}
	pw := ""
	if len(o.Users) > 0 {
		pw = filepath.Join(dir, "passwd")
		var b strings.Builder
		for u, pass := range o.Users {
			if strings.ContainsAny(u, ":\n") || strings.Contains(pass, "\n") {
				return nil, fmt.Errorf("user %q: no ':' or newline in a user name, no newline in a password", u)
			}
			b.WriteString(u + ":" + pass + "\n")
		}
		if err := os.WriteFile(pw, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
		if out, err := exec.Command("mosquitto_passwd", "-U", pw).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("mosquitto_passwd -U: %v: %s", err, out)
		}
	}
	acl := ""
	if o.ACL != "" {
		acl = filepath.Join(dir, "acl")
		if err := os.WriteFile(acl, []byte(o.ACL), 0o600); err != nil {
			return nil, err
		}
	}
	if o.Config == "" {
		o.Config = "allow_anonymous true\npersistence false\nset_tcp_nodelay true\nlistener 1883 127.0.0.1\n"
	}
	p.conf = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(p.conf, []byte(adapt(o.Config, dir, p.port, p.tlsPort, pw, acl, o.TLS)), 0o600); err != nil {
		return nil, err
	}
	return p, nil
}

// adapt rewrites the machine-specific lines of a mosquitto.conf: the
// first listener gets port, the second tlsPort (its certificate lines
// those of certs), further ones are dropped.
func adapt(conf, dir string, port, tlsPort int, pw, acl string, certs *Certs) string {
	var out []string
	listeners := 0
	sc := bufio.NewScanner(strings.NewReader(conf))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			out = append(out, line)
			continue
		}
		switch f[0] {
		case "listener":
			listeners++
			switch listeners {
			case 1:
				line = fmt.Sprintf("listener %d 127.0.0.1", port)
			case 2:
				line = fmt.Sprintf("listener %d 127.0.0.1", tlsPort)
			default:
				line = "# (mosquittotest: extra listener dropped) " + line
			}
		case "cafile", "certfile", "keyfile":
			if certs != nil {
				line = f[0] + " " + map[string]string{"cafile": certs.CAFile, "certfile": certs.CertFile, "keyfile": certs.KeyFile}[f[0]]
			}
		case "password_file":
			line = "password_file " + pw
		case "acl_file":
			line = "acl_file " + acl
		case "persistence_location":
			line = "persistence_location " + dir + "/"
		case "log_dest", "user", "pid_file":
			line = "# (mosquittotest) " + line
		}
		out = append(out, line)
	}
	out = append(out, "log_dest file "+filepath.Join(dir, "mosquitto.log"))
	if u, err := user.Current(); err == nil {
		out = append(out, "user "+u.Username)
	}
	return strings.Join(out, "\n") + "\n"
}

// Addr is "127.0.0.1:port".
func (p *Process) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// URL is "tcp://127.0.0.1:port" for paho.
func (p *Process) URL() string { return "tcp://" + p.Addr() }

// TLSAddr is "127.0.0.1:port" of the second (TLS) listener.
func (p *Process) TLSAddr() string { return fmt.Sprintf("127.0.0.1:%d", p.tlsPort) }

// TLSURL is "ssl://127.0.0.1:port" of the second (TLS) listener.
func (p *Process) TLSURL() string { return "ssl://" + p.TLSAddr() }

// Dir is the temporary directory holding configuration, log and
// persistence.
func (p *Process) Dir() string { return p.dir }

// Log returns the broker's log so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "mosquitto.log"))
	return string(b)
}

// Start (re)starts the broker on the same port and waits until it
// listens; it fails the test when it does not (a Launch's Process: use Run).
func (p *Process) Start() {
	p.t.Helper()
	if err := p.Run(); err != nil {
		p.t.Fatalf("%v", err)
	}
}

// Run (re)starts the broker on the same port and waits until it listens
// (at most 10 s).
func (p *Process) Run() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	cmd := exec.Command(Binary, "-c", p.conf)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mosquittotest: start: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p.cmd, p.exited = cmd, exited
	if p.noFile > 0 {
		// Before any client can connect: the broker has just been forked.
		lim := unix.Rlimit{Cur: p.noFile, Max: p.noFile}
		if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			p.cmd, p.exited = nil, nil
			return fmt.Errorf("mosquittotest: open-file limit %d: %w", p.noFile, err)
		}
	}
	if p.nice != 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, p.nice); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			p.cmd, p.exited = nil, nil
			return fmt.Errorf("mosquittotest: niceness %d: %w", p.nice, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err == nil {
			c.Close()
			if p.hasTLS {
				c, err = net.DialTimeout("tcp", p.TLSAddr(), time.Second)
			}
		}
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			p.cmd, p.exited = nil, nil
			return fmt.Errorf("mosquittotest: mosquitto exited: %v\n%s", err, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mosquittotest: not listening on %s after 10 s\n%s", p.Addr(), p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Pid is the running broker's process id (0 when stopped).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill stops the broker abruptly (SIGKILL, like a crash) and waits for it
// to exit. Killing a stopped broker does nothing.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd, p.exited = nil, nil
}

// EnableTLS uncomments the TLS listener block of a mosquitto.conf (the
// "#listener 8883" line and the commented settings right after it), as
// deploy/mosquitto/README.md tells an operator to do. Start then rewrites
// its port and, with Options.TLS, its certificate files.
func EnableTLS(conf string) string {
	lines := strings.Split(conf, "\n")
	in := false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "#listener 8883"):
			in = true
		case in && (len(l) < 2 || l[0] != '#' || l[1] == ' ' || l[1] == '#'):
			in = false
		}
		if in {
			lines[i] = l[1:]
		}
	}
	return strings.Join(lines, "\n")
}
