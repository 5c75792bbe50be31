// Package docs holds no code: this directory is the project's
// documentation for people, and its test keeps docs/architecture.md true
// to the code: the package map names every package of `go list ./...`
// once and no other, every repository path the page names exists, and
// every table's writing package is the one the page says; and the flag
// table of docs/api.md, "Running kluis-backend", has one row per flag of
// `kluis-backend serve` with its environment variable and default.
package docs
