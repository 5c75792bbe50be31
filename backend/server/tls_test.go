package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kluis/backend/broker/mosquittotest"
	"kluis/backend/broker/mqtttest"
	"kluis/backend/server"
	"kluis/controller/wire"
	"kluis/deploy/dev/testenv"
)

// The embedded broker with a certificate speaks TLS only: the backend's
// own link reaches it (pinning that certificate), a device trusting the
// city's CA verifies a code over it and gets the answer, and a client
// without that CA, or speaking plain MQTT, is refused.
func TestEmbeddedBrokerTLS(t *testing.T) {
	certs := mosquittotest.NewCerts(t)
	cert, err := tls.LoadX509KeyPair(certs.CertFile, certs.KeyFile)
	require.NoError(t, err)
	s := startBackend(t, server.Options{BrokerTLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	testenv.Eventually(t, "the backend's link to connect over TLS", func() bool {
		return strings.Contains(s.metrics(), "kluis_devicelink_broker_connected 1")
	})
	s.call("POST", "/api/v1/sites", map[string]any{"id": "kortrijk", "name": "Stadhuis"}, 201)
	s.call("POST", "/api/v1/devices", map[string]any{"id": "k1", "site_id": "kortrijk", "kind": "locker",
		"compartments": []map[string]any{{"board": 0, "channel": 3, "size": "M", "height_cm": 100}}}, 201)
	pw := s.call("POST", "/api/v1/devices/k1/mqtt-password", nil, 201)["password"].(string)
	url := "ssl://" + s.Broker

	dev := mqtttest.Connect(t, mqtttest.Options(url, "k1", "k1", pw).SetTLSConfig(certs.ClientTLS()))
	answers := mqtttest.NewInbox()
	res, _ := wire.TopicFor("k1", wire.KindVerifyRes)
	require.Equal(t, byte(1), mqtttest.Subscribe(t, dev, res, answers))
	req, _ := wire.Encode(&wire.VerifyRequest{ID: "tls-1", At: time.Now().UTC(), Method: wire.MethodPIN, PIN: "12345678", BirthDate: "1980-01-02"})
	reqTopic, _ := wire.TopicFor("k1", wire.KindVerifyReq)
	mqtttest.Publish(t, dev, reqTopic, 1, false, string(req))
	var got wire.VerifyResponse
	testenv.EventuallyWithin(t, 20*time.Second, "the backend's answer over TLS", func() bool {
		for _, m := range answers.All() {
			_, payload, _ := strings.Cut(m, " ")
			_ = json.Unmarshal([]byte(payload), &got)
		}
		return got.ID != ""
	})
	assert.Equal(t, "tls-1", got.ID, "the backend answered over TLS")
	assert.Equal(t, wire.VerifyWrongCode, got.Result)

	err = mqtttest.ConnectErr(mqtttest.Options(url, "k1", "k1", pw).SetTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	require.Error(t, err, "a client trusting the system CAs only")
	assert.ErrorAs(t, err, new(x509.UnknownAuthorityError))
	err = mqtttest.ConnectErr(mqtttest.Options("tcp://"+s.Broker, "k1", "k1", pw).SetConnectTimeout(3 * time.Second))
	require.Error(t, err, "plain MQTT on the TLS listener")
	assert.True(t, dev.IsConnectionOpen())
}
