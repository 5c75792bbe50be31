package screen

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"

	"kluis/controller/config"
	"kluis/controller/engine"
)

// The build ID hashes what it always hashed (each embedded file's path,
// size and bytes, every catalogue text, the revision), so a kiosk page
// does not reload after an upgrade that changed none of them; it is
// written the way it was before buildID stopped copying the files.
func TestBuildIDHashesFilesCatalogueAndRevision(t *testing.T) {
	cat, err := NewCatalog()
	require.NoError(t, err)
	got, err := buildID(cat)
	require.NoError(t, err)

	h := sha256.New()
	require.NoError(t, fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return err
	}))
	for _, k := range cat.Keys() {
		fmt.Fprintf(h, "%s=%q\n", k, cat.texts[k])
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, st := range bi.Settings {
			if st.Key == "vcs.revision" || st.Key == "vcs.modified" {
				fmt.Fprintf(h, "%s=%s\n", st.Key, st.Value)
			}
		}
	}
	require.Equal(t, hex.EncodeToString(h.Sum(nil))[:16], got)

	// A changed text changes it.
	other, err := NewCatalog()
	require.NoError(t, err)
	other.texts["title.done"] = append([]string{"\"anders\"\n"}, other.texts["title.done"][1:]...)
	changed, err := buildID(other)
	require.NoError(t, err)
	require.NotEqual(t, got, changed)
}

// Assets prepared before the engine exists (kluisd prepares them while
// its driver halts) make the same screen as New preparing them itself.
func TestPreparedAssetsMakeTheSameScreen(t *testing.T) {
	for _, kind := range []string{config.KindLocker, config.KindAutomaton} {
		cfg := testConfig(t, kind)
		a, err := Prepare(cfg, nil)
		require.NoError(t, err)
		src := &fakeSource{sc: engine.Screen{State: engine.StateIdle, Seq: 1}}
		pre, err := New(Options{Source: src, Config: cfg, Assets: a})
		require.NoError(t, err)
		own, err := New(Options{Source: src, Config: cfg})
		require.NoError(t, err)
		require.Equal(t, own.Build(), pre.Build(), kind)
		for _, path := range []string{"/?lang=fr", "/screen/static/screen.css"} {
			code, body := get(t, pre, path)
			require.Equal(t, http.StatusOK, code, path)
			_, want := get(t, own, path)
			require.Equal(t, want, body, "%s %s", kind, path)
		}
	}
	_, err := Prepare(nil, nil)
	require.Error(t, err)
}
