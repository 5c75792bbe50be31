package web_test

import (
	"html"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"kluis/backend/server"
	"kluis/backend/web"
)

// What does not exist under /staff/static/ says so in the person's
// language, as every console page does: before, the folder itself said
// "Your role may not do this." (404) and a missing file answered Go's
// "404 page not found" in English (found black-box).
func TestMissingStaticFilesSayNotFound(t *testing.T) {
	t.Parallel() // its own backend and database
	e := newEnv(t, server.Options{})
	c := e.client()
	for _, lang := range web.Languages {
		for _, path := range []string{"/staff/static/", "/staff/static/nothing.css", "/staff/static/img/"} {
			p := c.get(path + "?lang=" + lang)
			assert.Equal(t, http.StatusNotFound, p.status, path)
			assert.Contains(t, html.UnescapeString(p.body), web.CatalogueText(lang, "error.not_found"), "%s in %s", path, lang)
			assert.NotContains(t, html.UnescapeString(p.body), web.CatalogueText(lang, "error.forbidden"), path)
			assert.Equal(t, "nosniff", p.header.Get("X-Content-Type-Options"), path)
			assert.Contains(t, p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'", path)
		}
	}
	p := c.get("/staff/static/console.js")
	assert.Equal(t, http.StatusOK, p.status)
}
