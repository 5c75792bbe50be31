package web

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"kluis/backend/api"
)

// The pickup slip is the one notify writes when the holder has neither
// e-mail nor mobile (notify.Slip: the holder's language, the QR code and
// the PIN). The console shows its content inside a page of its own, whose
// print stylesheet lays it out for A4 paper or an 80 mm receipt printer;
// the slip's own inline style is left out (the console's pages allow no
// inline style), and only its headings, paragraphs and QR image are kept.

type slipData struct {
	Doc string
	// Lang is the holder's language, the slip's.
	Lang  string
	Paper string
	Body  template.HTML
	Back  string
}

// papers are the print layouts, each with its stylesheet.
var papers = map[string]string{"a4": "print-a4.css", "80mm": "print-80mm.css"}

func (w *Web) slip(rw http.ResponseWriter, q *req) error {
	ctx := q.r.Context()
	doc, err := w.o.Service.GetDocument(ctx, q.r.PathValue("id"))
	if err != nil {
		return err
	}
	paper := q.r.URL.Query().Get("paper")
	if _, ok := papers[paper]; !ok {
		paper = "a4"
	}
	raw, err := api.ViewSlip(ctx, w.o.Pool, w.o.Slip, q.actor(), doc, w.o.Clock())
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return fail(http.StatusNotFound, "error.no_slip")
	}
	if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
		return fail(http.StatusServiceUnavailable, "error.unavailable")
	}
	if errors.As(err, &ae) && ae.Code == "holder_data_erased" {
		return fail(http.StatusConflict, "error.holder_erased")
	}
	if err != nil {
		return err
	}
	body, err := slipBody(raw)
	if err != nil {
		return err
	}
	w.render(rw, q, http.StatusOK, "slip", q.t.F("slip.title", "number", doc.Number),
		slipData{Doc: doc.ID, Lang: doc.Language, Paper: paper, Body: body, Back: Prefix + "documents/" + doc.ID})
	return nil
}

// slipBody keeps the slip's headings, paragraphs (with their class) and
// its data:image/png QR code, re-rendered from the parsed document; every
// other element, attribute and style is dropped.
func slipBody(raw []byte) (template.HTML, error) {
	doc, err := html.Parse(bytes.NewReader(raw))
	if err != nil {
		return "", fmt.Errorf("web: slip: %w", err)
	}
	var body *html.Node
	var find func(n *html.Node)
	find = func(n *html.Node) {
		if n.Type == html.ElementNode && n.DataAtom == atom.Body {
			body = n
			return
		}
		for c := n.FirstChild; c != nil && body == nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	if body == nil {
		return "", errors.New("web: slip: no body")
	}
	var b strings.Builder
	for c := body.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode {
			continue
		}
		switch c.DataAtom {
		case atom.H1, atom.H2, atom.P:
			tag := c.Data
			if c.DataAtom == atom.H1 {
				tag = "h2" // the page has its own h1
			} else if c.DataAtom == atom.H2 {
				tag = "h3"
			}
			class := attr(c, "class")
			fmt.Fprintf(&b, "<%s", tag)
			if class != "" {
				fmt.Fprintf(&b, ` class="slip-%s"`, template.HTMLEscapeString(class))
			}
			fmt.Fprintf(&b, ">%s</%s>\n", template.HTMLEscapeString(text(c)), tag)
		case atom.Img:
			src := attr(c, "src")
			if !strings.HasPrefix(src, "data:image/png;base64,") {
				continue
			}
			fmt.Fprintf(&b, `<img class="slip-qr" alt="%s" src="%s">`+"\n", template.HTMLEscapeString(attr(c, "alt")), template.HTMLEscapeString(src))
		}
	}
	return template.HTML(b.String()), nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}
