package daemon

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"kluis/controller/wire"
	"kluis/hardware"
)

// backend is the test's stand-in for kluis-backend on the real broker.
type backend struct {
	c         mqtt.Client
	dev       string
	mu        sync.Mutex
	events    map[string]wire.Event
	completed map[string]bool
	results   []wire.CommandResult
	// silent: verify requests go unanswered (backend down, broker up).
	silent bool
	// verifyFn, when set, answers verify requests.
	verifyFn func(*wire.VerifyRequest) *wire.VerifyResponse
}

func newBackend(t *testing.T, dev string) *backend {
	b := &backend{dev: dev, events: map[string]wire.Event{}, completed: map[string]bool{}}
	subscribed := make(chan error, 4)
	// (Re)subscribe on every connection: a clean session loses them.
	b.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(brokerURL()).SetClientID("crash-backend-" + dev).SetCleanSession(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			sub := c.Subscribe(wire.Root+"/"+dev+"/#", 1, b.onMessage)
			sub.WaitTimeout(10 * time.Second)
			select {
			case subscribed <- sub.Error():
			default:
			}
		}))
	tok := b.c.Connect()
	require.True(t, tok.WaitTimeout(10*time.Second))
	require.NoError(t, tok.Error())
	select {
	case err := <-subscribed:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("test backend did not subscribe")
	}
	t.Cleanup(func() {
		b.c.Publish(wire.Root+"/"+dev+"/presence", 1, true, []byte{}).WaitTimeout(2 * time.Second)
		b.c.Disconnect(100)
	})
	return b
}

func (b *backend) pub(k wire.Kind, m wire.Message) {
	p, err := wire.Encode(m)
	if err != nil {
		panic(err)
	}
	tp, _ := wire.TopicFor(b.dev, k)
	b.c.Publish(tp, 1, false, p)
}

func (b *backend) onMessage(_ mqtt.Client, msg mqtt.Message) {
	if len(msg.Payload()) == 0 {
		return
	}
	_, m, err := wire.Decode(msg.Topic(), msg.Payload())
	if err != nil {
		return
	}
	switch v := m.(type) {
	case *wire.Event:
		b.mu.Lock()
		b.events[v.ID] = *v // committed, idempotently by id
		if v.Kind == wire.EvPickupCompleted {
			b.completed[v.DocumentID] = true
		}
		b.mu.Unlock()
		go b.pub(wire.KindAck, &wire.Ack{IDs: []string{v.ID}})
	case *wire.CommandResult:
		b.mu.Lock()
		b.results = append(b.results, *v)
		b.mu.Unlock()
	case *wire.VerifyRequest:
		b.mu.Lock()
		silent, fn := b.silent, b.verifyFn
		b.mu.Unlock()
		if silent {
			return
		}
		if fn != nil {
			go b.pub(wire.KindVerifyRes, fn(v))
			return
		}
		doc := strings.TrimPrefix(v.Token, "K1.")
		n, err := strconv.Atoi(strings.TrimPrefix(doc, "doc-"))
		res := &wire.VerifyResponse{ID: v.ID, Result: wire.VerifyWrongCode}
		b.mu.Lock()
		done := b.completed[doc]
		b.mu.Unlock()
		switch {
		case err != nil || n < 1 || n > 3*hardware.MaxChannels:
		case done:
			res.Result = wire.VerifyAlreadyCollected
		default:
			res = &wire.VerifyResponse{ID: v.ID, Result: wire.VerifyOK, DocumentID: doc,
				Addr: &wire.Address{Board: (n - 1) / hardware.MaxChannels, Channel: (n - 1) % hardware.MaxChannels}}
		}
		go b.pub(wire.KindVerifyRes, res)
	}
}

func (b *backend) isCompleted(doc string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.completed[doc]
}
