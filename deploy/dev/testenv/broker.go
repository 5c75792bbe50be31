package testenv

import "os"

// DefaultBroker is the local Mosquitto every test machine runs.
const DefaultBroker = "tcp://127.0.0.1:1883"

// BrokerURL returns the MQTT broker for tests: $MQTT_URL, or DefaultBroker.
// Tests on the shared broker use topics and client ids of their own.
func BrokerURL() string {
	if u := os.Getenv("MQTT_URL"); u != "" {
		return u
	}
	return DefaultBroker
}
