package devicelink

import (
	"strings"
	"sync"
	"time"
)

// replyCache keeps verify and staff answers by (device, kind, request id)
// for ttl, so that a repeated request gets the first answer again. Entries
// expire in insertion order: each call prunes from the oldest end, so a
// lookup costs O(1) amortized however many entries there are (it used to
// scan them all under the lock). At most max entries are kept, except
// those still being answered, and at most perDevice of one device (the
// key's part before its first NUL): a request over its device's budget is
// answered, and kept, at once, so one device flooding request ids (a
// stolen password) pushed the whole fleet's answers out before; past its
// share a device's answers are given but not kept.
type replyCache struct {
	ttl       time.Duration
	max       int
	perDevice int

	mu      sync.Mutex
	entries map[string]*reply
	order   []string // keys, oldest first, from head
	head    int
	devices map[string]int // entries per device
}

// replyCacheMax bounds the answers kept for the whole fleet; one device
// keeps at most a sixteenth of them (a kiosk makes a few requests a
// minute, its budget allows 300 in the two minutes they are kept).
const replyCacheMax = 10000

func newReplyCache(ttl time.Duration, max, perDevice int) *replyCache {
	return &replyCache{ttl: ttl, max: max, perDevice: perDevice, entries: map[string]*reply{}, devices: map[string]int{}}
}

// deviceOf is the device a key belongs to.
func deviceOf(key string) string {
	d, _, _ := strings.Cut(key, "\x00")
	return d
}

// get returns the entry of key, creating it (not yet answered: its done
// channel open) when absent; seen reports whether it existed.
func (c *replyCache) get(key string, now time.Time) (r *reply, seen bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
	if r, ok := c.entries[key]; ok {
		return r, true
	}
	r = &reply{done: make(chan struct{}), at: now}
	d := deviceOf(key)
	if c.perDevice > 0 && c.devices[d] >= c.perDevice {
		return r, false // answered, not kept: the device holds its share
	}
	c.entries[key] = r
	c.order = append(c.order, key)
	c.devices[d]++
	return r, false
}

// pruneLocked drops answered entries from the oldest end while they are
// older than ttl or the cache holds more than max; it stops at the first
// entry still being answered or still fresh.
func (c *replyCache) pruneLocked(now time.Time) {
	for c.head < len(c.order) {
		k := c.order[c.head]
		r := c.entries[k]
		if now.Sub(r.at) <= c.ttl && len(c.entries) <= c.max {
			break
		}
		select {
		case <-r.done:
		default:
			return // still being answered: kept, and what follows with it
		}
		delete(c.entries, k)
		if d := deviceOf(k); c.devices[d] > 1 {
			c.devices[d]--
		} else {
			delete(c.devices, d)
		}
		c.order[c.head] = ""
		c.head++
	}
	if c.head == len(c.order) {
		c.order, c.head = c.order[:0], 0
	} else if c.head > 1024 && c.head > len(c.order)/2 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}

// size is the number of entries.
func (c *replyCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
