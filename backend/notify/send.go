package notify

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"time"
)

// MailSender delivers a built message. from and to are bare addresses.
type MailSender interface {
	SendMail(ctx context.Context, from string, to []string, msg []byte) error
}

// SMTP sends through an SMTP server with net/smtp: STARTTLS when the server
// offers it (required unless AllowPlain), AUTH PLAIN when a username is set.
type SMTP struct {
	// Addr is host:port.
	Addr string
	// Username and Password enable AUTH PLAIN (only over TLS, or to localhost).
	Username, Password string
	// TLS configures STARTTLS; default ServerName from Addr.
	TLS *tls.Config
	// AllowPlain permits sending without STARTTLS (a relay on localhost).
	AllowPlain bool
	// Timeout bounds the whole conversation; default 30 s.
	Timeout time.Duration
	// HelloName is sent in EHLO; default "localhost".
	HelloName string
}

// ErrNoTLS means the server does not offer STARTTLS and AllowPlain is off.
var ErrNoTLS = errors.New("SMTP server offers no STARTTLS")

// SendMail runs one SMTP conversation.
func (s *SMTP) SendMail(ctx context.Context, from string, to []string, msg []byte) (err error) {
	if len(to) == 0 {
		return fmt.Errorf("notify: smtp: no recipient: %w", ErrInvalid)
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return fmt.Errorf("notify: smtp address %q: %w", s.Addr, ErrInvalid)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("notify: smtp dial: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("notify: smtp greeting: %w", err)
	}
	defer c.Close()
	hello := s.HelloName
	if hello == "" {
		hello = "localhost"
	}
	if err := c.Hello(hello); err != nil {
		return fmt.Errorf("notify: smtp EHLO: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := s.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("notify: smtp STARTTLS: %w", err)
		}
	} else if !s.AllowPlain {
		return fmt.Errorf("notify: smtp %s: %w", s.Addr, ErrNoTLS)
	}
	if s.Username != "" {
		if ok, _ := c.Extension("AUTH"); ok {
			if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
				return fmt.Errorf("notify: smtp AUTH: %w", err)
			}
		}
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("notify: smtp MAIL: %w", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return fmt.Errorf("notify: smtp RCPT: %w", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("notify: smtp DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("notify: smtp DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("notify: smtp DATA: %w", err)
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("notify: smtp QUIT: %w", err)
	}
	return nil
}

// Drop writes each message as a standard .eml file into Dir (for
// development and the demo): exactly the bytes SMTP would send, written to a
// temporary file and renamed, with mode 0600 (they hold PINs).
type Drop struct {
	// Dir receives the files; created 0700 when missing.
	Dir string
	// Clock names the files; default time.Now.
	Clock func() time.Time
}

// SendMail writes msg to Dir/<time>-<random>.eml.
func (d *Drop) SendMail(_ context.Context, _ string, to []string, msg []byte) error {
	if len(to) == 0 {
		return fmt.Errorf("notify: drop: no recipient: %w", ErrInvalid)
	}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return fmt.Errorf("notify: drop: %w", err)
	}
	now := time.Now
	if d.Clock != nil {
		now = d.Clock
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := now().UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b[:]) + ".eml"
	return WriteFileAtomic(filepath.Join(d.Dir, name), msg)
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory, synced and renamed, mode 0600.
func WriteFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("notify: write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("notify: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("notify: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("notify: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("notify: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("notify: write %s: %w", path, err)
	}
	ok = true
	return nil
}
