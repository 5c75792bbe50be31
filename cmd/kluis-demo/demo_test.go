package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"kluis/backend/codes"
	"kluis/backend/notify"
)

func readyMail(t *testing.T, lang, to, token, pin string) []byte {
	t.Helper()
	r, err := notify.Render(lang, notify.MsgReady, notify.MessageData{FirstName: "An", Doc: notify.DocName(lang, "eid"),
		SiteName: "Stadhuis", SiteAddress: "Grote Markt 54", DeviceName: "Hal A", Compartment: 4,
		Deadline: "1 december", PIN: pin, TrackURL: "http://127.0.0.1/t/x", Sender: "Stad Kortrijk"}, "qr@kluis")
	require.NoError(t, err)
	png, err := notify.QRPNG(token)
	require.NoError(t, err)
	raw, err := notify.BuildEmail(notify.Email{From: "Stad Kortrijk <kluis@kortrijk.be>", To: to, Subject: r.Subject,
		Text: r.Text, HTML: r.HTML, Inline: []notify.Inline{{ContentID: "qr@kluis", ContentType: "image/png", Filename: "qr.png", Data: png}},
		Date: time.Date(2026, 11, 21, 22, 0, 0, 0, time.UTC), MessageID: "m1@kluis"})
	require.NoError(t, err)
	return raw
}

func TestParseMailQRAndPIN(t *testing.T) {
	const token = "K1.eyJ2IjoxLCJjaWQiOiJBQUFBQUFBQUFBQUFBQUFBQUFBQUFBIiwiZGV2IjoiaGFsbC1hIiwiZXhwIjoxODAwMDAwMDAwfQ.c2lnbmF0dXJl"
	for _, lang := range []string{"en", "nl", "fr", "de"} {
		t.Run(lang, func(t *testing.T) {
			m, err := parseMail(readyMail(t, lang, "An Peeters <an.peeters@example.org>", token, "123 456"))
			require.NoError(t, err)
			require.Equal(t, "an.peeters@example.org", m.To)
			require.Equal(t, token, m.QR, "QR decoded from the inline PNG")
			require.Equal(t, "123456", m.PIN)
			require.NotEmpty(t, m.Subject)
		})
	}
}

// TestDecodeQRPNGManyTokens decodes QR images made exactly like the
// backend's (notify.QRPNG) of real tokens, including the ones that once
// defeated gozxing.
func TestDecodeQRPNGManyTokens(t *testing.T) {
	// A fixed key: the same tokens every run (deterministic test).
	signing := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	for _, i := range []int{0, 1, 2, 3, 133, 184, 255} {
		cid := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("code-id-%08d", i)))
		token, err := codes.SignToken(signing, codes.Claims{CodeID: cid, DeviceID: "kortrijk-hall-a", Expires: 1800000000 + int64(i)})
		require.NoError(t, err)
		png, err := notify.QRPNG(token)
		require.NoError(t, err)
		got, err := decodeQRPNG(png)
		require.NoError(t, err, "token %d", i)
		require.Equal(t, token, got)
	}
}

func TestParseMailWithoutQR(t *testing.T) {
	raw := "From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\nno code here\r\n"
	m, err := parseMail([]byte(raw))
	require.NoError(t, err)
	require.Empty(t, m.QR)
	require.Empty(t, m.PIN)
	require.Contains(t, m.Text, "no code here")

	_, err = parseMail([]byte("not a mail"))
	require.Error(t, err)
}

func TestMailboxOrderAndSkip(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "20261121T220001.000000000Z-b.eml"), readyMail(t, "en", "b@example.org", "K1.b.c", "222 333"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "20261121T220000.000000000Z-a.eml"), readyMail(t, "en", "a@example.org", "K1.a.c", "111 222"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("partial"), 0o600))
	ms, err := mailbox{dir: dir}.all()
	require.NoError(t, err)
	require.Len(t, ms, 2)
	require.Equal(t, "a@example.org", ms[0].To)
	require.Equal(t, "111222", ms[0].PIN)
	require.Equal(t, "K1.b.c", ms[1].QR)

	ms, err = mailbox{dir: filepath.Join(dir, "absent")}.all()
	require.NoError(t, err)
	require.Empty(t, ms)
}

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestCutProxy(t *testing.T) {
	ctx := context.Background()
	p, err := newCutProxy(ctx, echoServer(t), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	got, err := roundTrip(c, "hello")
	require.NoError(t, err)
	require.Equal(t, "hello\n", got)

	// Cut: the open connection dies and a new one is closed at once.
	p.Cut()
	require.True(t, p.IsCut())
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = bufio.NewReader(c).ReadString('\n')
	require.Error(t, err, "the relayed connection is closed by the cut")
	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err) // the kernel accepts; the proxy closes it
	_, err = roundTrip(c2, "during cut")
	require.Error(t, err)
	c2.Close()

	// Restore: traffic flows again.
	p.Restore()
	require.False(t, p.IsCut())
	c3, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c3.Close()
	got, err = roundTrip(c3, "back")
	require.NoError(t, err)
	require.Equal(t, "back\n", got)
}

func TestCutProxyUnreachableTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	ln.Close()
	p, err := newCutProxy(context.Background(), dead, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = roundTrip(c, "x")
	require.Error(t, err, "a connection to a dead broker is closed, not hung")
}
