// Package mosquittotest runs a private Mosquitto process for a test: a
// generated configuration in a temporary directory, a free loopback port
// (and a second one for a TLS listener), optional password and ACL files,
// and Kill/Start to simulate a broker crash and restart. It never touches
// the system broker. NewCerts makes a CA and a broker certificate for the
// TLS listener.
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
	// with mosquitto_passwd -b.
	Users map[string]string
	// ACL is the acl_file content, if any.
	ACL string
	// TLS, when set, replaces the cafile, certfile and keyfile lines of
	// the configuration's second listener (its TLS listener, which gets a
	// port of its own: TLSURL).
	TLS *Certs
}

// Process is one running (or stopped) Mosquitto.
type Process struct {
	t       testing.TB
	dir     string
	conf    string
	port    int
	tlsPort int
	hasTLS  bool

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
	if _, err := exec.LookPath(Binary); err != nil {
		t.Fatalf("mosquittotest: %v", err)
	}
	dir := t.TempDir()
	p := &Process{t: t, dir: dir, port: testenv.FreePort(t), tlsPort: testenv.FreePort(t), hasTLS: o.TLS != nil}
	pw := ""
	if len(o.Users) > 0 {
		pw = filepath.Join(dir, "passwd")
		if err := os.WriteFile(pw, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for u, pass := range o.Users {
			out, err := exec.Command("mosquitto_passwd", "-b", pw, u, pass).CombinedOutput()
			if err != nil {
				t.Fatalf("mosquittotest: mosquitto_passwd: %v: %s", err, out)
			}
		}
	}
	acl := ""
	if o.ACL != "" {
		acl = filepath.Join(dir, "acl")
		if err := os.WriteFile(acl, []byte(o.ACL), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if o.Config == "" {
		o.Config = "allow_anonymous true\npersistence false\nset_tcp_nodelay true\nlistener 1883 127.0.0.1\n"
	}
	p.conf = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(p.conf, []byte(adapt(o.Config, dir, p.port, p.tlsPort, pw, acl, o.TLS)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	p.Start()
	return p
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

// Start (re)starts the broker on the same port and waits until it listens.
func (p *Process) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	cmd := exec.Command(Binary, "-c", p.conf)
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("mosquittotest: start: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p.cmd, p.exited = cmd, exited
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
			return
		}
		select {
		case err := <-exited:
			p.cmd, p.exited = nil, nil
			p.t.Fatalf("mosquittotest: mosquitto exited: %v\n%s", err, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("mosquittotest: not listening on %s after 10 s\n%s", p.Addr(), p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
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
