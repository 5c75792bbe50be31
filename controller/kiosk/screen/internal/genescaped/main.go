// Command genescaped writes escaped.tmpl for controller/kiosk/screen (its
// go:generate): the screen's templates escaped by html/template
// (internal/escapegen).
package main

import (
	"log"
	"os"

	"kluis/controller/kiosk/screen/internal/escapegen"
)

func main() {
	text, err := escapegen.Screen(os.DirFS("."))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("escaped.tmpl", []byte(text), 0o644); err != nil {
		log.Fatal(err)
	}
}
