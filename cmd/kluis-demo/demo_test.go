package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The console and dashboard URLs are printed with every demo user's name
// and password, so that a person can sign in while the night runs.
func TestPrintConsole(t *testing.T) {
	d := &demo{apiBase: "http://127.0.0.1:18080", people: []person{{"counter staff", "an.balie-1a2b", "Demo-secret1"},
		{"technician", "tom.techniek-1a2b", "Demo-secret1"}, {"admin", "admin", "Admin-secret2"}}}
	var b strings.Builder
	d.printConsole(&b, "Watch")
	out := b.String()
	for _, want := range []string{"http://127.0.0.1:18080/staff/\n", "http://127.0.0.1:18080/staff/devices\n",
		"user an.balie-1a2b  password Demo-secret1", "user tom.techniek-1a2b  password Demo-secret1", "user admin  password Admin-secret2"} {
		require.Contains(t, out, want)
	}
}
