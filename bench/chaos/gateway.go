package chaos

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// GatewayMode is how a mail or SMS gateway behaves.
type GatewayMode int

// The modes.
const (
	GatewayOK      GatewayMode = iota // answers at once
	GatewaySlow                       // answers after the gateway's Delay
	GatewayFailing                    // refuses every message
)

// gate is the switch shared by both gateways.
type gate struct {
	mu    sync.Mutex
	mode  GatewayMode
	delay time.Duration
}

// SetMode switches the gateway; delay is used by GatewaySlow.
func (g *gate) SetMode(m GatewayMode, delay time.Duration) {
	g.mu.Lock()
	g.mode, g.delay = m, delay
	g.mu.Unlock()
}

func (g *gate) get() (GatewayMode, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mode, g.delay
}

// SMTPGateway is a small SMTP server on loopback (no TLS: the backend sends
// with smtp://...?plain=1) that writes every accepted message into Dir as
// an .eml file, as the backend's drop directory would, so that
// backend/notify/mailread reads it back. It can be slowed down or made to
// refuse messages (451).
type SMTPGateway struct {
	gate
	Dir string
	ln  net.Listener
	wg  sync.WaitGroup
	mu  sync.Mutex
	n   int
}

// NewSMTPGateway listens on a free loopback port.
func NewSMTPGateway(dir string) (*SMTPGateway, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &SMTPGateway{Dir: dir, ln: ln}
	g.wg.Add(1)
	go g.serve()
	return g, nil
}

// URL is the backend's KLUIS_MAIL_URL for this gateway.
func (g *SMTPGateway) URL() string { return "smtp://" + g.ln.Addr().String() + "?plain=1" }

// Close stops the gateway.
func (g *SMTPGateway) Close() error {
	err := g.ln.Close()
	g.wg.Wait()
	return err
}

func (g *SMTPGateway) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
			g.session(c)
		}()
	}
}

func (g *SMTPGateway) session(c net.Conn) {
	r := bufio.NewReader(c)
	say := func(s string) bool {
		_, err := io.WriteString(c, s+"\r\n")
		return err == nil
	}
	if !say("220 chaos ESMTP") {
		return
	}
	var to []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250-chaos\r\n250 8BITMIME")
		case strings.HasPrefix(cmd, "MAIL FROM"):
			to = nil
			say("250 ok")
		case strings.HasPrefix(cmd, "RCPT TO"):
			to = append(to, strings.TrimSpace(line[8:]))
			say("250 ok")
		case cmd == "DATA":
			if !say("354 go on") {
				return
			}
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				l = strings.TrimPrefix(l, ".") // dot-unstuffing
				msg.WriteString(l)
			}
			mode, delay := g.get()
			switch mode {
			case GatewaySlow:
				time.Sleep(delay)
			case GatewayFailing:
				say("451 4.3.0 chaos: gateway failing")
				continue
			}
			if err := g.store(msg.String()); err != nil {
				say("451 4.3.0 " + err.Error())
				continue
			}
			say("250 queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		case cmd == "RSET", cmd == "NOOP":
			say("250 ok")
		default:
			say("502 not implemented")
		}
	}
}

func (g *SMTPGateway) store(msg string) error {
	g.mu.Lock()
	g.n++
	n := g.n
	g.mu.Unlock()
	tmp := filepath.Join(g.Dir, fmt.Sprintf(".%06d.tmp", n))
	if err := os.WriteFile(tmp, []byte(msg), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(g.Dir, fmt.Sprintf("%s-%06d.eml", time.Now().UTC().Format("20060102T150405.000000000Z"), n)))
}

// SMS is one text the SMS gateway accepted.
type SMS struct {
	To, Text string
	At       time.Time
}

// SMSGateway is the HTTP SMS gateway the backend posts {"to","text"} to.
type SMSGateway struct {
	gate
	srv *http.Server
	ln  net.Listener
	mu  sync.Mutex
	got []SMS
}

// NewSMSGateway listens on a free loopback port.
func NewSMSGateway() (*SMSGateway, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &SMSGateway{ln: ln}
	g.srv = &http.Server{Handler: http.HandlerFunc(g.handle), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = g.srv.Serve(ln) }()
	return g, nil
}

// URL is the backend's KLUIS_SMS_URL.
func (g *SMSGateway) URL() string { return "http://" + g.ln.Addr().String() + "/sms" }

// Close stops the gateway.
func (g *SMSGateway) Close() error { return g.srv.Close() }

// Texts returns every accepted text.
func (g *SMSGateway) Texts() []SMS {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]SMS(nil), g.got...)
}

func (g *SMSGateway) handle(w http.ResponseWriter, r *http.Request) {
	var m struct{ To, Text string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&m); err != nil || m.To == "" {
		http.Error(w, "bad message", http.StatusBadRequest)
		return
	}
	mode, delay := g.get()
	switch mode {
	case GatewaySlow:
		time.Sleep(delay)
	case GatewayFailing:
		http.Error(w, "chaos: gateway failing", http.StatusServiceUnavailable)
		return
	}
	g.mu.Lock()
	g.got = append(g.got, SMS{To: m.To, Text: m.Text, At: time.Now()})
	g.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"ok":true}`)
}
