package mqttconn

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker/mosquittotest"
)

// A paho client on Open talks to a real Mosquitto over TCP and over TLS
// (the certificate checked against the test CA): a message it publishes,
// larger than the read buffer, comes back through its subscription intact.
func TestRoundTripTCPAndTLS(t *testing.T) {
	certs := mosquittotest.NewCerts(t)
	p := mosquittotest.Start(t, mosquittotest.Options{TLS: certs, Config: "listener 1883\nallow_anonymous true\n" +
		"listener 8883\nallow_anonymous true\ncafile x\ncertfile x\nkeyfile x\n"})
	payload := make([]byte, 3*bufSize+17)
	for i := range payload {
		payload[i] = byte(i)
	}
	for _, u := range []string{p.URL(), p.TLSURL()} {
		t.Run(u[:3], func(t *testing.T) {
			opts := mqtt.NewClientOptions().AddBroker(u).SetClientID(fmt.Sprintf("mqttconn-%d", time.Now().UnixNano())).
				SetTLSConfig(certs.ClientTLS()).SetConnectTimeout(10 * time.Second).
				SetCustomOpenConnectionFn(Open)
			c := mqtt.NewClient(opts)
			tok := c.Connect()
			require.True(t, tok.WaitTimeout(20*time.Second), "connect")
			require.NoError(t, tok.Error())
			defer c.Disconnect(100)
			got := make(chan []byte, 3)
			tok = c.Subscribe("mqttconn/test", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Payload() })
			require.True(t, tok.WaitTimeout(20*time.Second), "subscribe")
			require.NoError(t, tok.Error())
			for i := 0; i < 3; i++ {
				tok = c.Publish("mqttconn/test", 1, false, payload)
				require.True(t, tok.WaitTimeout(20*time.Second), "publish")
				require.NoError(t, tok.Error())
			}
			for i := 0; i < 3; i++ {
				select {
				case b := <-got:
					require.Equal(t, payload, b)
				case <-time.After(20 * time.Second):
					t.Fatal("no message back")
				}
			}
		})
	}
	_, err := Open(&url.URL{Scheme: "unix", Path: "/x"}, *mqtt.NewClientOptions())
	require.ErrorContains(t, err, "unknown scheme")
}
