package web_test

import (
	"os"
	"testing"

	"kluis/deploy/dev/browsertest"
)

// TestMain stops the Chromium the browser tests share once they are done.
func TestMain(m *testing.M) {
	code := m.Run()
	browsertest.Close()
	os.Exit(code)
}
