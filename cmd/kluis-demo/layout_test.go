package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/backend/store"
	"kluis/controller/config"
	"kluis/controller/layoutgrid"
)

// Every device of the demo goes to the backend and to its kluisd with the
// same layout, and both accept it: the backend's device record (the body
// the demo posts, read as the API reads it) and kluisd's configuration
// resolve to the same front, so the console's map and the kiosk screen's
// drawing agree. Each locker bank has its screen, every cell of its grid
// is used, its large compartments (size L) make its bottom row, and the
// compartments' heights above the floor follow their rows; the automaton
// has no layout on either side.
func TestFleetLayoutsAgree(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "signing.pub")
	require.NoError(t, os.WriteFile(pub, bytes.Repeat([]byte{'a'}, 64), 0o600))
	pw := filepath.Join(dir, "mqtt.password")
	require.NoError(t, os.WriteFile(pw, []byte("mqtt-secret\n"), 0o600))
	d := &demo{run: dir, brokerAddr: "127.0.0.1:1883", fieldbus: "tcp://127.0.0.1:1884"}
	lockers := 0
	for _, s := range fleet {
		// The backend's side.
		body, err := json.Marshal(s.deviceRequest())
		require.NoError(t, err)
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var nd store.NewDevice
		require.NoError(t, dec.Decode(&nd), s.ID)
		require.NoError(t, nd.Validate(), s.ID)

		// kluisd's side.
		n := &node{spec: s, dir: filepath.Join(dir, s.ID)}
		n.kioskAddr, n.metrics = "127.0.0.1:8088", "127.0.0.1:9108"
		yml := d.kluisdConfig(n, "127.0.0.1:1885", pw, pub)
		cfg, err := config.Parse([]byte(yml), config.ParseOptions{})
		require.NoError(t, err, "%s:\n%s", s.ID, yml)
		drawn, err := cfg.ResolvedLayout()
		require.NoError(t, err, s.ID)

		if s.Kind == "automaton" {
			require.Nil(t, nd.Layout, s.ID)
			require.Nil(t, cfg.Layout, s.ID)
			require.Nil(t, drawn, s.ID)
			continue
		}
		lockers++
		require.NotNil(t, nd.Layout, s.ID)
		require.Equal(t, *nd.Layout, *cfg.Layout, "%s: the same layout on both sides", s.ID)
		numbers := make([]int, 0, len(nd.Compartments))
		sizes := map[int]string{}
		heights := map[int]int{}
		for _, c := range nd.Compartments {
			numbers = append(numbers, c.Number)
			sizes[c.Number] = string(c.Size)
			heights[c.Number] = c.HeightCM
		}
		mapped, err := layoutgrid.Resolve(nd.Layout, numbers)
		require.NoError(t, err, s.ID)
		require.Equal(t, mapped, *drawn, "%s: the console's map and the kiosk's drawing", s.ID)

		require.NotNil(t, drawn.Screen, s.ID)
		used := drawn.Screen.Width * drawn.Screen.Height
		for _, p := range drawn.Places {
			used += p.Width * p.Height
			bottom := p.Row+p.Height-1 == drawn.Rows
			require.Equal(t, bottom, sizes[p.Number] == "L", "%s compartment %d at row %d: large exactly at the bottom", s.ID, p.Number, p.Row)
			// Heights follow the rows: the parcel row within a wheelchair
			// user's reach (at most 120 cm), the top row above it.
			if bottom {
				require.Less(t, heights[p.Number], 60, "%s compartment %d", s.ID, p.Number)
			}
			if p.Row == 1 {
				require.Greater(t, heights[p.Number], 170, "%s compartment %d", s.ID, p.Number)
			}
			for _, q := range drawn.Places {
				if q.Row < p.Row {
					require.Greater(t, heights[q.Number], heights[p.Number], "%s: %d above %d", s.ID, q.Number, p.Number)
				}
			}
		}
		require.Equal(t, drawn.Columns*drawn.Rows, used, "%s: no empty cell", s.ID)
		require.Len(t, drawn.Places, s.Channels, s.ID)
	}
	require.Equal(t, 2, lockers)
}

// Hal B's layout section as kluisd reads it: the screen in the middle,
// the four large compartments along the bottom.
func TestLayoutYAML(t *testing.T) {
	require.Equal(t, `layout:                 # the same as the backend's device record
  columns: 4
  rows: 6
  screen: {column: 2, row: 2, width: 2, height: 2}
  places:
    - {number: 13, column: 1, row: 5, height: 2}
    - {number: 14, column: 2, row: 5, height: 2}
    - {number: 15, column: 3, row: 5, height: 2}
    - {number: 16, column: 4, row: 5, height: 2}
`, fleet[1].layoutYAML())
}
