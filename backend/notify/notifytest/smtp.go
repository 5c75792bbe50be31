// Package notifytest has test helpers for code that sends notifications: a
// small real SMTP server on a loopback port (with optional STARTTLS and
// AUTH PLAIN) that keeps what it receives, and an SMS gateway recorder.
package notifytest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Message is one mail the server accepted.
type Message struct {
	// From is the MAIL FROM address.
	From string
	// To are the RCPT TO addresses.
	To []string
	// Data is the message as transmitted (dot-unstuffed, CRLF line ends).
	Data []byte
	// TLS tells whether STARTTLS was used.
	TLS bool
	// User is the AUTH PLAIN user, if any.
	User string
}

// SMTPServer is a minimal SMTP server for tests.
type SMTPServer struct {
	// Addr is host:port to connect to.
	Addr string
	ln   net.Listener
	tls  *tls.Config
	cert *x509.Certificate
	mu   sync.Mutex
	msgs []Message
	wg   sync.WaitGroup
}

// SMTPOptions configure NewSMTPServer.
type SMTPOptions struct {
	// StartTLS makes the server offer STARTTLS with a fresh self-signed
	// certificate for 127.0.0.1.
	StartTLS bool
}

// NewSMTPServer starts a server on 127.0.0.1 and stops it when t ends.
func NewSMTPServer(t testing.TB, opts SMTPOptions) *SMTPServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("notifytest: listen: %v", err)
	}
	s := &SMTPServer{Addr: ln.Addr().String(), ln: ln}
	if opts.StartTLS {
		s.tls, s.cert, err = selfSigned()
		if err != nil {
			t.Fatalf("notifytest: certificate: %v", err)
		}
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// ClientTLS is a client configuration trusting the server's certificate.
func (s *SMTPServer) ClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	if s.cert != nil {
		pool.AddCert(s.cert)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// Messages returns what was received so far.
func (s *SMTPServer) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

func (s *SMTPServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serve(c)
		}()
	}
}

const maxMessage = 10 << 20

func (s *SMTPServer) serve(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	say := func(line string) { _, _ = w.WriteString(line + "\r\n"); _ = w.Flush() }
	say("220 127.0.0.1 notifytest ESMTP")
	var cur Message
	secure := false
	for i := 0; i < 1000; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO", "HELO":
			exts := []string{"127.0.0.1", "8BITMIME", "AUTH PLAIN"}
			if s.tls != nil && !secure {
				exts = append(exts, "STARTTLS")
			}
			for j, e := range exts {
				sep := "-"
				if j == len(exts)-1 {
					sep = " "
				}
				say("250" + sep + e)
			}
		case "STARTTLS":
			if s.tls == nil || secure {
				say("454 TLS not available")
				continue
			}
			say("220 go ahead")
			tc := tls.Server(conn, s.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			conn, secure = tc, true
			r, w = bufio.NewReader(conn), bufio.NewWriter(conn)
			say = func(line string) { _, _ = w.WriteString(line + "\r\n"); _ = w.Flush() }
		case "AUTH":
			f := strings.Fields(line)
			if len(f) != 3 || strings.ToUpper(f[1]) != "PLAIN" {
				say("504 only AUTH PLAIN <base64>")
				continue
			}
			raw, err := base64.StdEncoding.DecodeString(f[2])
			parts := bytes.Split(raw, []byte{0})
			if err != nil || len(parts) != 3 {
				say("501 bad AUTH PLAIN")
				continue
			}
			cur.User = string(parts[1])
			say("235 ok")
		case "MAIL":
			cur.From = addr(line)
			cur.To = nil
			say("250 ok")
		case "RCPT":
			cur.To = append(cur.To, addr(line))
			say("250 ok")
		case "DATA":
			say("354 end with .")
			var data bytes.Buffer
			for data.Len() < maxMessage {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" || l == ".\n" {
					break
				}
				l = strings.TrimPrefix(l, ".")
				data.WriteString(l)
			}
			cur.Data, cur.TLS = data.Bytes(), secure
			s.mu.Lock()
			s.msgs = append(s.msgs, cur)
			s.mu.Unlock()
			cur = Message{User: cur.User}
			say("250 queued")
		case "RSET", "NOOP":
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 not implemented")
		}
	}
}

func addr(line string) string {
	i, j := strings.IndexByte(line, '<'), strings.LastIndexByte(line, '>')
	if i < 0 || j < i {
		return ""
	}
	return line[i+1 : j]
}

func selfSigned() (*tls.Config, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "notifytest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, cert, nil
}

// SMS is one request the gateway recorder got.
type SMS struct {
	// To and Text are the JSON fields.
	To, Text string
	// Auth is the Authorization header.
	Auth string
}

// SMSGateway records JSON SMS posts; set Status to make it answer an error.
type SMSGateway struct {
	// URL to post to.
	URL    string
	mu     sync.Mutex
	got    []SMS
	status int
}

// NewSMSGateway starts an httptest server stopped when t ends.
func NewSMSGateway(t testing.TB) *SMSGateway {
	g := &SMSGateway{status: http.StatusAccepted}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m SMS
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := json.Unmarshal(body, &m); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		m.Auth = r.Header.Get("Authorization")
		g.mu.Lock()
		g.got = append(g.got, m)
		st := g.status
		g.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// SetStatus sets the answer's status code for the next requests.
func (g *SMSGateway) SetStatus(code int) {
	g.mu.Lock()
	g.status = code
	g.mu.Unlock()
}

// Received returns the messages so far.
func (g *SMSGateway) Received() []SMS {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]SMS(nil), g.got...)
}
