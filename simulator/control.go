package simulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"kluis/hardware"
)

// ControlServer serves the control API on loopback.
type ControlServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// ServeControl listens on addr, which must be a loopback address, and
// serves NewControlHandler(f) until ctx ends or Close.
func ServeControl(ctx context.Context, f *Fleet, addr string, log *slog.Logger) (*ControlServer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("control address %q: %w", addr, ErrBadInput)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("control address %q is not loopback: %w", addr, ErrBadInput)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("control listen: %w", err)
	}
	cs := &ControlServer{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: NewControlHandler(f), ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = cs.srv.Serve(ln) }()
	go func() {
		select {
		case <-ctx.Done():
			cs.Close()
		case <-cs.done:
		}
	}()
	log.With("part", "simulator-control").Info("control API", "addr", ln.Addr().String())
	return cs, nil
}

// Addr returns the listening address.
func (c *ControlServer) Addr() string { return c.ln.Addr().String() }

// Close shuts the server down.
func (c *ControlServer) Close() error {
	select {
	case <-c.done:
		return nil
	default:
		close(c.done)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.srv.Shutdown(ctx)
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadInput):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNoSuchChannel), errors.Is(err, errNoDevice):
		code = http.StatusNotFound
	case errors.Is(err, ErrDoorClosed), errors.Is(err, ErrDoorOpen), errors.Is(err, ErrEmpty),
		errors.Is(err, ErrOccupied), errors.Is(err, ErrNotAutomaton), errors.Is(err, hardware.ErrBusy), errors.Is(err, hardware.ErrFault):
		code = http.StatusConflict
	}
	writeJSON(w, code, apiError{Error: err.Error()})
}

var errNoDevice = errors.New("simulator: no such device")

// DeviceSummary is one entry of GET /v1/devices.
type DeviceSummary struct {
	Endpoint
	Boards   int `json:"boards"`
	Channels int `json:"channels"`
	Slots    int `json:"slots,omitempty"`
}

// NewControlHandler returns the control API over f:
//
//	GET  /v1/devices
//	GET  /v1/devices/{id}/state
//	GET  /v1/devices/{id}/pulses
//	GET  /v1/devices/{id}/presents
//	GET  /v1/devices/{id}/boards/{b}/queue
//	GET  /v1/devices/{id}/line                          LineStats (serial devices)
//	GET  /v1/devices/{id}/faults
//	POST /v1/devices/{id}/faults                         body: Faults JSON
//	POST /v1/devices/{id}/channels/{n}/{action}?board=B  take|put|close|force|leave-open|pulse|stuck|sensor
//	POST /v1/devices/{id}/boards/{b}/{action}            present|reboot|watchdog|jam|fault
func NewControlHandler(f *Fleet) http.Handler {
	mux := http.NewServeMux()
	dev := func(r *http.Request) (*Device, error) {
		d := f.Device(r.PathValue("id"))
		if d == nil {
			return nil, fmt.Errorf("device %q: %w", r.PathValue("id"), errNoDevice)
		}
		return d, nil
	}
	mux.HandleFunc("GET /v1/devices", func(w http.ResponseWriter, r *http.Request) {
		out := []DeviceSummary{}
		for _, id := range f.IDs() {
			d := f.Device(id)
			ep, _ := f.Endpoint(id)
			out = append(out, DeviceSummary{Endpoint: ep, Boards: d.NumBoards(), Channels: d.NumChannels(), Slots: d.Options().Slots})
		}
		writeJSON(w, http.StatusOK, out)
	})
	// onDevice serves pattern: the device named by {id}, then fn's answer
	// as JSON, or its error.
	onDevice := func(pattern string, fn func(d *Device, r *http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			d, err := dev(r)
			if err != nil {
				writeErr(w, err)
				return
			}
			out, err := fn(d, r)
			if err != nil {
				writeErr(w, err)
				return
			}
			writeJSON(w, http.StatusOK, out)
		})
	}
	onDevice("GET /v1/devices/{id}/state", func(d *Device, _ *http.Request) (any, error) {
		return d.State(), nil
	})
	onDevice("GET /v1/devices/{id}/pulses", func(d *Device, _ *http.Request) (any, error) {
		ps := d.Pulses()
		if ps == nil {
			ps = []Pulse{}
		}
		return ps, nil
	})
	onDevice("GET /v1/devices/{id}/presents", func(d *Device, _ *http.Request) (any, error) {
		ps := d.Presents()
		if ps == nil {
			ps = []Present{}
		}
		return ps, nil
	})
	onDevice("GET /v1/devices/{id}/boards/{b}/queue", func(d *Device, r *http.Request) (any, error) {
		b, err := intParam(r.PathValue("b"), "board")
		if err != nil {
			return nil, err
		}
		return d.Queue(b)
	})
	onDevice("GET /v1/devices/{id}/line", func(d *Device, r *http.Request) (any, error) {
		l := f.Line(r.PathValue("id"))
		if l == nil {
			return nil, fmt.Errorf("device %q has no serial line: %w", r.PathValue("id"), ErrBadInput)
		}
		return l.Stats(), nil
	})
	onDevice("GET /v1/devices/{id}/faults", func(d *Device, _ *http.Request) (any, error) {
		return d.Faults(), nil
	})
	onDevice("POST /v1/devices/{id}/faults", func(d *Device, r *http.Request) (any, error) {
		var fl Faults
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fl); err != nil {
			return nil, fmt.Errorf("faults body: %v: %w", err, ErrBadInput)
		}
		if err := d.SetFaults(fl); err != nil {
			return nil, err
		}
		return d.Faults(), nil
	})
	onDevice("POST /v1/devices/{id}/channels/{n}/{action}", func(d *Device, r *http.Request) (any, error) {
		return channelAction(d, r)
	})
	onDevice("POST /v1/devices/{id}/boards/{b}/{action}", boardAction)
	return mux
}

func intParam(s, name string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 100000 {
		return 0, fmt.Errorf("%s %q is not a small non-negative number: %w", name, s, ErrBadInput)
	}
	return n, nil
}

func boolParam(s string) (bool, error) {
	switch s {
	case "", "true", "1", "on":
		return true, nil
	case "false", "0", "off":
		return false, nil
	}
	return false, fmt.Errorf("on=%q (want true or false): %w", s, ErrBadInput)
}

// ActionResult is the answer to a channel action.
type ActionResult struct {
	Channel ChannelTruth `json:"channel"`
	// Item is the label taken by take.
	Item string `json:"item,omitempty"`
}

func channelAction(d *Device, r *http.Request) (ActionResult, error) {
	q := r.URL.Query()
	c, err := intParam(r.PathValue("n"), "channel")
	if err != nil {
		return ActionResult{}, err
	}
	b := 0
	if s := q.Get("board"); s != "" {
		if b, err = intParam(s, "board"); err != nil {
			return ActionResult{}, err
		}
	}
	var res ActionResult
	switch r.PathValue("action") {
	case "take":
		res.Item, err = d.Take(b, c)
	case "put":
		err = d.Put(b, c, q.Get("label"))
	case "close":
		err = d.Close(b, c)
	case "force":
		err = d.Force(b, c)
	case "leave-open":
		err = d.LeaveOpen(b, c)
	case "pulse":
		ms := 500
		if s := q.Get("ms"); s != "" {
			if ms, err = intParam(s, "ms"); err != nil {
				return res, err
			}
		}
		err = d.Pulse(PulseRequest{Board: b, Channel: c, Duration: time.Duration(ms) * time.Millisecond, Via: "api"})
	case "stuck":
		var on bool
		if on, err = boolParam(q.Get("on")); err == nil {
			err = d.SetStuck(b, c, on)
		}
	case "sensor":
		var broken bool
		if broken, err = boolParam(q.Get("broken")); err == nil {
			err = d.SetSensorBroken(b, c, broken)
		}
	default:
		err = fmt.Errorf("channel action %q (want take, put, close, force, leave-open, pulse, stuck or sensor): %w", r.PathValue("action"), ErrBadInput)
	}
	if err != nil {
		return res, err
	}
	res.Channel, err = d.Channel(b, c)
	return res, err
}

// boardAction carries out POST .../boards/{b}/{action} and answers the
// device state.
func boardAction(d *Device, r *http.Request) (any, error) {
	b, err := intParam(r.PathValue("b"), "board")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	switch r.PathValue("action") {
	case "present":
		var s int
		if s, err = intParam(q.Get("slot"), "slot"); err == nil {
			err = d.Present(b, s, 0, "api")
		}
	case "reboot":
		err = d.Reboot(b)
	case "watchdog":
		// The board's watchdog fires as if the master had gone silent:
		// every lock relocked, a watchdog event queued.
		err = d.RelockAll(b, true)
	case "jam":
		err = d.JamNext(b)
	case "fault":
		var on bool
		if on, err = boolParam(q.Get("on")); err == nil {
			err = d.SetMechanismFault(b, on)
		}
	default:
		err = fmt.Errorf("board action %q (want present, reboot, watchdog, jam or fault): %w", r.PathValue("action"), ErrBadInput)
	}
	if err != nil {
		return nil, err
	}
	return d.State(), nil
}
