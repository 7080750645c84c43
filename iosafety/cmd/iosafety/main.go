// Command iosafety reports I/O-safety hazards in Go code: descriptor
// numbers used without owning or borrowing them, borrowed descriptors that
// escape, and state shared through an open file description. See package
// github.com/sealbuf/sealbuf/iosafety for the checks.
//
// Run it on its own or as a vet tool:
//
//	go run github.com/sealbuf/sealbuf/iosafety/cmd/iosafety@latest ./...
//	go install github.com/sealbuf/sealbuf/iosafety/cmd/iosafety@latest
//	go vet -vettool=$(go env GOPATH)/bin/iosafety ./...
package main

import (
	"github.com/sealbuf/sealbuf/iosafety"
	"golang.org/x/tools/go/analysis/singlechecker"
)

func main() { singlechecker.Main(iosafety.Analyzer) }
