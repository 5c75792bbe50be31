package devicelink

import (
	"sync"
	"time"
)

// coalescer holds the presence and heartbeat messages not yet recorded,
// the latest of each per device: a newer one replaces the older (only the
// latest state matters), so its size is bounded by the fleet and no
// message is ever dropped for want of room. Devices are taken in the
// order they first got pending work.
type coalescer struct {
	mu      sync.Mutex
	seq     uint64
	pending map[string]*latest
	order   []string // devices with pending work, oldest first, from head
	head    int
	wake    chan struct{}
}

// latest is a device's pending presence and heartbeat (nil: none), with
// their arrival times and order.
type latest struct {
	device                  string
	presence, heartbeat     []byte
	presenceAt, heartbeatAt time.Time
	presenceSeq, beatSeq    uint64
}

func newCoalescer() *coalescer {
	return &coalescer{pending: map[string]*latest{}, wake: make(chan struct{}, 1)}
}

// add records a presence (heartbeat false) or heartbeat payload of device
// received at; it reports whether it replaced one not yet recorded.
func (c *coalescer) add(device string, heartbeat bool, payload []byte, at time.Time) (replaced bool) {
	c.mu.Lock()
	c.seq++
	p := c.pending[device]
	if p == nil {
		p = &latest{device: device}
		c.pending[device] = p
		c.order = append(c.order, device)
	}
	if heartbeat {
		replaced = p.heartbeat != nil
		p.heartbeat, p.heartbeatAt, p.beatSeq = payload, at, c.seq
	} else {
		replaced = p.presence != nil
		p.presence, p.presenceAt, p.presenceSeq = payload, at, c.seq
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return replaced
}

// take removes and returns the pending work of up to max devices.
func (c *coalescer) take(max int) []*latest {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*latest
	for c.head < len(c.order) && len(out) < max {
		d := c.order[c.head]
		c.order[c.head] = ""
		c.head++
		out = append(out, c.pending[d])
		delete(c.pending, d)
	}
	if c.head == len(c.order) {
		c.order, c.head = c.order[:0], 0
	} else if c.head > 1024 && c.head > len(c.order)/2 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
	return out
}

// putBack returns work taken and not recorded (a flush cut short by the
// shutdown) to the front, oldest first as taken; what arrived for the same
// device since is newer and wins.
func (c *coalescer) putBack(ps []*latest) {
	if len(ps) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	front := make([]string, 0, len(ps)+len(c.order)-c.head)
	back := map[string]bool{}
	for _, p := range ps {
		front = append(front, p.device)
		q := c.pending[p.device]
		if q == nil {
			c.pending[p.device] = p
			continue
		}
		back[p.device] = true // already waiting again: moves to the front
		if p.presence != nil && (q.presence == nil || p.presenceSeq > q.presenceSeq) {
			q.presence, q.presenceAt, q.presenceSeq = p.presence, p.presenceAt, p.presenceSeq
		}
		if p.heartbeat != nil && (q.heartbeat == nil || p.beatSeq > q.beatSeq) {
			q.heartbeat, q.heartbeatAt, q.beatSeq = p.heartbeat, p.heartbeatAt, p.beatSeq
		}
	}
	for _, d := range c.order[c.head:] {
		if !back[d] {
			front = append(front, d)
		}
	}
	c.order, c.head = front, 0
}

// len is the number of devices with pending work.
func (c *coalescer) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}
