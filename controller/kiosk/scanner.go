package kiosk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"

	"kluis/controller/engine"
	"kluis/hardware"
)

// MaxScan is the longest scanned line accepted; longer lines are dropped.
const MaxScan = 1024

// Submitter takes a scanned code (the engine's Pickup).
type Submitter func(ctx context.Context, r engine.PickupRequest) (engine.Screen, error)

// ReadScanner reads lines (CR, LF or CRLF terminated) from a barcode
// scanner and submits each non-empty line as a QR code, until ctx ends or
// r fails with something other than a read timeout. Over-long lines and
// lines with control characters are dropped and logged (without content).
func ReadScanner(ctx context.Context, r io.Reader, submit Submitter, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("part", "scanner")
	buf := make([]byte, 256)
	var line []byte
	overlong := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b == '\n' || b == '\r' {
				if !overlong && len(line) > 0 {
					code := strings.TrimSpace(string(line))
					if code != "" {
						if _, serr := submit(ctx, engine.PickupRequest{QR: code}); serr != nil {
							log.Warn("scanned code refused", "bytes", len(code), "err", serr)
						}
					}
				} else if overlong {
					log.Warn("over-long scan dropped")
				}
				line, overlong = line[:0], false
				continue
			}
			if overlong {
				continue
			}
			if len(line) >= MaxScan {
				overlong = true
				continue
			}
			line = append(line, b)
		}
		if err != nil {
			if errors.Is(err, hardware.ErrTimeout) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}
