// Package fuzz holds the module's go test -fuzz targets. It has no API: the
// targets live in its _test.go files and their seed corpora are checked in
// under testdata/fuzz, so a plain go test replays them.
//
// FuzzParseSeals checks that memfd.ParseSeals and memfd.Seals.String round
// trip and that ParseSeals never panics on any input. Run it for a while with
//
//	go test -run=NONE -fuzz=FuzzParseSeals -fuzztime=30s ./fuzz
package fuzz
