// Package fuzz holds the module's go test -fuzz targets. It has no API: the
// targets live in its _test.go files and their seed corpora are checked in
// under testdata/fuzz/<Target>, so a plain go test replays them (with every
// crasher ever found kept there as a regression input).
//
//   - FuzzParseSeals: memfd.ParseSeals and Seals.String round trip, and
//     ParseSeals never panics.
//   - FuzzParseRights, FuzzParseFrame: arbitrary bytes as a peer's control
//     message and stream frame prefix, fed to the parsers Conn.Receive uses
//     (internal/scm): no panic, only wire.ErrMalformed, at most one descriptor
//     per 4 bytes, agreement with x/sys's parser, prefixes that re-encode to
//     themselves.
//   - FuzzReceiveStream: arbitrary bytes sent over a real "unix" stream
//     socket into Conn.Receive, in fuzz-chosen chunks with real descriptors
//     attached (memfds sealed or not, oversized, a pipe, /dev/zero): no
//     panic or hang, no descriptor or mapping leaked, errors of documented
//     kinds only.
//   - FuzzMemfdOps: a program of write / truncate (by a second descriptor) /
//     seal / Map / Open / access / close steps on one memfd, checked after
//     every step against the file's bytes as pread sees them: Sealed never
//     faults, Mapping accesses past the end fail with ErrTruncated and those
//     below it return the file's bytes, nothing leaks.
//   - FuzzConnRoundTrip: random header lengths (to 64 KiB), descriptor counts
//     (to 253) and short receive buffers through Send and Receive over both
//     socket types: every message arrives whole and in order.
//
// Run one for a while with
//
//	go test -run=NONE -fuzz='^FuzzMemfdOps$' -fuzztime=5m ./fuzz
//
// The targets that touch the kernel run a few thousand inputs a second; the
// fuzzer also spends time minimising each new input, which shows as 0/sec
// until the minimised input's runs are counted.
package fuzz
