package serialport

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/creack/pty"
	"golang.org/x/term"

	"kluis/hardware"
)

// newPTY opens a pseudo-terminal in raw mode and returns its master end and
// the path of its slave end (the "serial device").
func newPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		// Fail, not skip: every serial test runs on a pty, and a machine
		// without them must not pass by running none.
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	if _, err := term.MakeRaw(int(tty.Fd())); err != nil {
		t.Fatal(err)
	}
	path := tty.Name()
	// The slave stays usable after this descriptor closes, as long as the
	// master is open; go.bug.st/serial opens it by path.
	tty.Close()
	t.Cleanup(func() { master.Close() })
	return master, path
}

// waitInputQueue waits (bounded) until the input queue of the tty at path
// holds n bytes (ioctl TIOCINQ on a descriptor of its own: every
// descriptor of a tty sees the same queue).
func waitInputQueue(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var q int32
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TIOCINQ, uintptr(unsafe.Pointer(&q))); errno != 0 {
			t.Fatalf("TIOCINQ: %v", errno)
		}
		if int(q) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d bytes reached the input queue", q, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitBlockedInRead waits (bounded) until a goroutine is inside Port.Read,
// down in go.bug.st/serial's wait for input.
func waitBlockedInRead(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "serialport.(*Port).Read(") && strings.Contains(g, "unixutils.Select(") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no goroutine ever blocked in Port.Read")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func readN(t *testing.T, r io.Reader, n int, within time.Duration) []byte {
	t.Helper()
	buf := make([]byte, 0, n)
	deadline := time.Now().Add(within)
	tmp := make([]byte, 256)
	for len(buf) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d bytes: % X", len(buf), n, buf)
		}
		k, err := r.Read(tmp[:n-len(buf)])
		buf = append(buf, tmp[:k]...)
		if err != nil && !errors.Is(err, hardware.ErrTimeout) {
			t.Fatalf("read: %v", err)
		}
	}
	return buf
}

func TestReadWriteAllBytes(t *testing.T) {
	master, path := newPTY(t)
	p, err := Open(path, 9600, Options{ReadTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	// board -> master direction: written into the pty master, read from the port.
	if _, err := master.Write(all); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, p, len(all), 2*time.Second); !bytes.Equal(got, all) {
		t.Fatalf("port read % X", got)
	}
	// master -> board direction.
	if _, err := p.Write(all); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, master, len(all), 2*time.Second); !bytes.Equal(got, all) {
		t.Fatalf("pty read % X", got)
	}
}

func TestReadTimeoutIsAnError(t *testing.T) {
	_, path := newPTY(t)
	p, err := Open(path, 115200, Options{ReadTimeout: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	n, err := p.Read(make([]byte, 10))
	if n != 0 || !errors.Is(err, hardware.ErrTimeout) {
		t.Fatalf("Read = %d, %v; want a timeout error", n, err)
	}
	if err := p.SetReadTimeout(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Read(make([]byte, 1)); !errors.Is(err, hardware.ErrTimeout) {
		t.Fatalf("after SetReadTimeout: %v", err)
	}
}

func TestFlush(t *testing.T) {
	master, path := newPTY(t)
	p, err := Open(path, 9600, Options{ReadTimeout: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stale := []byte("stale bytes")
	master.Write(stale)
	// The bytes reach the port's input queue asynchronously: wait until
	// they all wait there, so Flush has something to drop.
	waitInputQueue(t, path, len(stale))
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Read(make([]byte, 32)); !errors.Is(err, hardware.ErrTimeout) {
		t.Fatalf("after Flush read %d, %v", n, err)
	}
	master.Write([]byte{0xA5})
	if got := readN(t, p, 1, time.Second); got[0] != 0xA5 {
		t.Fatalf("% X", got)
	}
}

func TestReopenAfterDeviceVanished(t *testing.T) {
	master1, path1 := newPTY(t)
	link := filepath.Join(t.TempDir(), "ttyKLUIS")
	if err := os.Symlink(path1, link); err != nil {
		t.Fatal(err)
	}
	p, err := Open(link, 9600, Options{ReadTimeout: 20 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	master1.Write([]byte{1})
	readN(t, p, 1, time.Second)

	// The device vanishes: the other end closes and the path disappears.
	master1.Close()
	os.Remove(link)
	var stale error
	for i := 0; i < 50 && stale == nil; i++ {
		if _, err := p.Read(make([]byte, 1)); err != nil && !errors.Is(err, hardware.ErrTimeout) {
			stale = err
		}
	}
	if !errors.Is(stale, ErrStale) || !p.Stale() {
		t.Fatalf("want ErrStale, got %v", stale)
	}
	// Reads keep failing with ErrStale (returning, not blocking) while the
	// device is gone.
	for i := 0; i < 5; i++ {
		if _, err := p.Read(make([]byte, 1)); !errors.Is(err, ErrStale) {
			t.Fatalf("while gone: %v", err)
		}
	}

	// The device comes back at the same path.
	master2, path2 := newPTY(t)
	if err := os.Symlink(path2, link); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for p.Stale() {
		if time.Now().After(deadline) {
			t.Fatal("never reopened")
		}
		p.Read(make([]byte, 1))
	}
	if p.Reopens() != 1 {
		t.Fatalf("reopens = %d", p.Reopens())
	}
	master2.Write([]byte{0x03, 0x11})
	if got := readN(t, p, 2, time.Second); !bytes.Equal(got, []byte{0x03, 0x11}) {
		t.Fatalf("% X", got)
	}
	if _, err := p.Write([]byte{7}); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, master2, 1, time.Second); got[0] != 7 {
		t.Fatalf("% X", got)
	}
}

func TestCloseEndsBlockedRead(t *testing.T) {
	_, path := newPTY(t)
	p, err := Open(path, 9600, Options{ReadTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.Read(make([]byte, 1))
		done <- err
	}()
	waitBlockedInRead(t)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked read: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end the read")
	}
	if _, err := p.Read(make([]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenMissing(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "nope"), 9600, Options{}); err == nil {
		t.Fatal("opened a missing device")
	}
}
