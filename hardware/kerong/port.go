package kerong

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"kluis/hardware"
	"kluis/hardware/serialport"
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

// OpenSerial opens a serial port with hardware/serialport, 8N1: a read
// timeout is an error wrapping hardware.ErrTimeout, and an I/O error is an
// error too (the driver then closes the port and opens it again on the
// next request).
func OpenSerial(path string, baud int) (Port, error) {
	p, err := serialport.Open(path, baud, serialport.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("kerong: %w", err)
	}
	return serialPort{p}, nil
}

// serialPort adds ResetInputBuffer to *serialport.Port.
type serialPort struct{ *serialport.Port }

func (s serialPort) ResetInputBuffer() error { return s.Flush() }

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
