package web

import (
	"net/http"
	"sort"
)

// CatalogueKeys are the catalogue's keys, sorted, for the tests of
// package web_test.
func CatalogueKeys() []string {
	ks := make([]string, 0, len(catalogue[Languages[0]]))
	for k := range catalogue[Languages[0]] {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// CatalogueText is a catalogue entry as written (before its arguments),
// for the tests of package web_test.
func CatalogueText(lang, key string) string { return catalogue[lang][key] }

// HandleForTest adds a route to the console's mux (a handler that
// panics, for the tests of package web_test).
func (w *Web) HandleForTest(pattern string, h http.HandlerFunc) { w.mux.HandleFunc(pattern, h) }
