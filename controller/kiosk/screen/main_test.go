package screen_test

import (
	"os"
	"testing"

	"kluis/deploy/dev/browsertest"
)

// TestMain stops the Chromium the browser tests share once they are done
// (without it the binary may exit within browsertest.Linger of the last
// test and leave the browser's profile directory behind).
func TestMain(m *testing.M) {
	code := m.Run()
	browsertest.Close()
	os.Exit(code)
}
