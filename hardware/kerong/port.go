package kerong

import (
	"errors"
	"fmt"
	"io"
	"time"

	"go.bug.st/serial"

	"kluis/hardware"
)

// Port is the byte line to the boards. A Read that finds nothing before the
// read timeout must return an error wrapping hardware.ErrTimeout, not
// (0, nil).
type Port interface {
	io.ReadWriteCloser
	// SetReadTimeout bounds the next reads.
	SetReadTimeout(d time.Duration) error
	// ResetInputBuffer drops bytes received but not yet read.
	ResetInputBuffer() error
}

// OpenFunc opens the port at path with baud, 8N1.
type OpenFunc func(path string, baud int) (Port, error)

// OpenSerial opens a serial port with go.bug.st/serial, 8N1, and wraps it
// so that a read timeout is an error wrapping hardware.ErrTimeout.
func OpenSerial(path string, baud int) (Port, error) {
	p, err := serial.Open(path, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, fmt.Errorf("kerong: open %s: %w", path, err)
	}
	return &serialPort{p: p}, nil
}

// serialPort turns go.bug.st/serial's (0, nil) on a read timeout into an
// error.
type serialPort struct {
	p serial.Port
}

func (s *serialPort) Read(b []byte) (int, error) {
	n, err := s.p.Read(b)
	if err != nil {
		return n, fmt.Errorf("kerong: read: %w", err)
	}
	if n == 0 {
		return 0, fmt.Errorf("kerong: read: %w", hardware.ErrTimeout)
	}
	return n, nil
}

func (s *serialPort) Write(b []byte) (int, error) {
	n, err := s.p.Write(b)
	if err != nil {
		return n, fmt.Errorf("kerong: write: %w", err)
	}
	return n, nil
}

func (s *serialPort) Close() error                         { return s.p.Close() }
func (s *serialPort) SetReadTimeout(d time.Duration) error { return s.p.SetReadTimeout(d) }
func (s *serialPort) ResetInputBuffer() error              { return s.p.ResetInputBuffer() }

// deadlineReader reads from a Port until a deadline, setting the port's
// read timeout to what is left before each read.
type deadlineReader struct {
	p        Port
	deadline time.Time
	now      func() time.Time
}

func (d *deadlineReader) Read(b []byte) (int, error) {
	left := d.deadline.Sub(d.now())
	if left <= 0 {
		return 0, fmt.Errorf("kerong: no answer in time: %w", hardware.ErrTimeout)
	}
	if left < time.Millisecond {
		left = time.Millisecond
	}
	if err := d.p.SetReadTimeout(left); err != nil {
		return 0, fmt.Errorf("kerong: set read timeout: %w", err)
	}
	n, err := d.p.Read(b)
	if n == 0 && err == nil {
		err = fmt.Errorf("kerong: read: %w", hardware.ErrTimeout)
	}
	return n, err
}

func isTimeout(err error) bool { return errors.Is(err, hardware.ErrTimeout) }
