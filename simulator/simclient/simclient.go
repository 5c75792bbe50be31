// Package simclient is the client of kluis-sim's control API (the HTTP API
// of simulator.NewControlHandler, described in simulator/README.md): the
// devices, each device's true physical state, the pulses and carousel
// commands it received, its event queues, serial line statistics and
// faults, and the actions of people and technicians on doors and boards.
//
// The demo (cmd/kluis-demo), the system tests (controller/systemtest), the
// chaos gauntlet (bench/chaos) and `kluis-sim ctl` (simulator/simcli) all
// use it. Every call takes a context and the client's HTTP calls have a
// timeout. An answer other than 200 comes back as an *Error with the status
// and the API's message.
package simclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"kluis/simulator"
)

// DefaultTimeout bounds each call when Options.HTTP is nil.
const DefaultTimeout = 30 * time.Second

// MaxAnswer is the largest answer read; the rest is cut off.
const MaxAnswer = 16 << 20

// Options configure a Client.
type Options struct {
	// HTTP sends the requests; default a client with DefaultTimeout.
	HTTP *http.Client
}

// Client calls one simulator's control API.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a client of the control API at addr: "host:port" (as
// kluis-sim prints it in its ready line) or a URL "http://host:port".
func New(addr string, opts Options) *Client {
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Timeout: DefaultTimeout}
	}
	base := strings.TrimRight(addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{base: base, hc: opts.HTTP}
}

// Base returns the API's URL, "http://host:port" (the routes are under
// /v1/devices).
func (c *Client) Base() string { return c.base }

// Error is an answer other than 200 OK.
type Error struct {
	Method, Path string
	Status       int
	// Message is the API's {"error": ...}, or the start of the body.
	Message string
}

// Error names the request, the status and the message.
func (e *Error) Error() string {
	return fmt.Sprintf("simulator %s %s: %d %s", e.Method, e.Path, e.Status, e.Message)
}

// StatusOf returns the HTTP status of an *Error in err's chain, 0 when
// there is none.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Raw sends body (nil: none) to path (under the API's URL, e.g.
// "/v1/devices/a/state") and returns the answer as it came. It is for
// callers that print the answer, like `kluis-sim ctl`; the other methods
// decode it.
func (c *Client) Raw(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, fmt.Errorf("simulator %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("simulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer))
	if err != nil {
		return nil, fmt.Errorf("simulator %s %s: read: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var ae struct {
			Error string `json:"error"`
		}
		var msg string
		if json.Unmarshal(b, &ae) != nil || ae.Error == "" {
			msg = strings.Join(strings.Fields(string(b)), " ")
			if len(msg) > 300 {
				msg = msg[:300] + "…"
			}
		} else {
			msg = ae.Error
		}
		return b, &Error{Method: method, Path: path, Status: resp.StatusCode, Message: msg}
	}
	return b, nil
}

// call sends in (nil: no body) and decodes the answer into out.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("simulator %s %s: encode: %w", method, path, err)
		}
	}
	b, err := c.Raw(ctx, method, path, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("simulator %s %s: decode: %w", method, path, err)
	}
	return nil
}

// DevicePath returns the path of a device's resource: DevicePath("a",
// "boards", "0", "queue") is "/v1/devices/a/boards/0/queue". Every part is
// escaped.
func DevicePath(id string, parts ...string) string {
	p := "/v1/devices/" + url.PathEscape(id)
	for _, s := range parts {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// Devices lists every device and where it is reached.
func (c *Client) Devices(ctx context.Context) ([]simulator.DeviceSummary, error) {
	var out []simulator.DeviceSummary
	err := c.call(ctx, http.MethodGet, "/v1/devices", nil, &out)
	return out, err
}

// State returns a device's true physical state.
func (c *Client) State(ctx context.Context, dev string) (simulator.State, error) {
	var st simulator.State
	err := c.call(ctx, http.MethodGet, DevicePath(dev, "state"), nil, &st)
	return st, err
}

// Truth returns the true state of one channel (from State).
func (c *Client) Truth(ctx context.Context, dev string, board, ch int) (simulator.ChannelTruth, error) {
	st, err := c.State(ctx, dev)
	if err != nil {
		return simulator.ChannelTruth{}, err
	}
	for _, t := range st.Channels {
		if t.Board == board && t.Channel == ch {
			return t, nil
		}
	}
	return simulator.ChannelTruth{}, fmt.Errorf("simulator: %s has no board %d channel %d", dev, board, ch)
}

// Pulses returns every pulse the device received, oldest first.
func (c *Client) Pulses(ctx context.Context, dev string) ([]simulator.Pulse, error) {
	var ps []simulator.Pulse
	err := c.call(ctx, http.MethodGet, DevicePath(dev, "pulses"), nil, &ps)
	return ps, err
}

// Presents returns every carousel command the device received.
func (c *Client) Presents(ctx context.Context, dev string) ([]simulator.Present, error) {
	var ps []simulator.Present
	err := c.call(ctx, http.MethodGet, DevicePath(dev, "presents"), nil, &ps)
	return ps, err
}

// Queue returns a board's event queue.
func (c *Client) Queue(ctx context.Context, dev string, board int) (simulator.QueueSnapshot, error) {
	var q simulator.QueueSnapshot
	err := c.call(ctx, http.MethodGet, DevicePath(dev, "boards", strconv.Itoa(board), "queue"), nil, &q)
	return q, err
}

// Line returns what a serial device's boards heard on their line.
func (c *Client) Line(ctx context.Context, dev string) (simulator.LineStats, error) {
	var l simulator.LineStats
	err := c.call(ctx, http.MethodGet, DevicePath(dev, "line"), nil, &l)
	return l, err
}

// Faults returns a device's fault settings.
func (c *Client) Faults(ctx context.Context, dev string) (simulator.Faults, error) {
	var f simulator.Faults
	err := c.call(ctx, http.MethodGet, DevicePath(dev, "faults"), nil, &f)
	return f, err
}

// SetFaults replaces a device's fault settings and returns them as now set.
func (c *Client) SetFaults(ctx context.Context, dev string, f simulator.Faults) (simulator.Faults, error) {
	var out simulator.Faults
	err := c.call(ctx, http.MethodPost, DevicePath(dev, "faults"), f, &out)
	return out, err
}

// Channel actions (POST .../channels/{n}/{action}).
const (
	Take      = "take"       // take the item (answers its label)
	Put       = "put"        // put an item, labelled q["label"]
	Close     = "close"      // close the door
	Force     = "force"      // force the door open without a pulse
	LeaveOpen = "leave-open" // the person leaves the door open
	PulseNow  = "pulse"      // pulse the lock for q["ms"] milliseconds
	Stuck     = "stuck"      // q["on"]: the lock does (not) open when pulsed
	Sensor    = "sensor"     // q["broken"]: the door sensor is (not) broken
)

// Channel carries out a person's or technician's action on channel ch of
// board (see the constants) with its parameters q (nil: none), and returns
// the channel's truth afterwards (and the label taken by Take).
func (c *Client) Channel(ctx context.Context, dev string, board, ch int, action string, q url.Values) (simulator.ActionResult, error) {
	v := url.Values{}
	for k, vs := range q {
		v[k] = vs
	}
	v.Set("board", strconv.Itoa(board))
	var out simulator.ActionResult
	err := c.call(ctx, http.MethodPost, DevicePath(dev, "channels", strconv.Itoa(ch), action)+"?"+v.Encode(), nil, &out)
	return out, err
}

// Board actions (POST .../boards/{b}/{action}).
const (
	PresentSlot = "present"  // present slot q["slot"] at the hatch
	Reboot      = "reboot"   // reboot the board
	Watchdog    = "watchdog" // the board's watchdog fires: every lock relocked
	Jam         = "jam"      // the next carousel move jams
	Fault       = "fault"    // q["on"]: raise or clear a mechanism fault
)

// Board carries out an action on a board (see the constants) with its
// parameters q (nil: none) and returns the device's state afterwards.
func (c *Client) Board(ctx context.Context, dev string, board int, action string, q url.Values) (simulator.State, error) {
	path := DevicePath(dev, "boards", strconv.Itoa(board), action)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var st simulator.State
	err := c.call(ctx, http.MethodPost, path, nil, &st)
	return st, err
}
