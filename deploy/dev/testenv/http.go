package testenv

import (
	"net/http"
	"time"
)

// HTTPTimeout bounds every HTTP call a test makes through HTTPClient.
const HTTPTimeout = 20 * time.Second

// HTTPClient returns an HTTP client whose calls end after HTTPTimeout, for
// tests: never http.Get with the default client, which waits forever.
func HTTPClient() *http.Client { return &http.Client{Timeout: HTTPTimeout} }
