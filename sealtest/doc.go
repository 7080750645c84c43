//go:build linux

// Package sealtest plays the hostile or sloppy peer in tests of code that
// receives memfds — with sealbuf.Open, sealbuf.Map, sealbuf.Conn or its own
// code over a *net.UnixConn — as net/http/httptest plays the server.
//
// # Descriptors a peer hands over
//
// A Desc is a recipe for one descriptor: Sealed (well made), Unsealed,
// PartlySealed, Memfd (any seals), Large (sparse, for size policies), Pipe,
// Socket, RegularFile (on disk), TmpfsFile (tmpfs, not a memfd), DevZero,
// OPath (an O_PATH descriptor of a memfd) and Directory. Desc.File makes one
// in this process, for Open and Map; Peer.Send makes them in the peer and
// sends them. What sealbuf makes of each (the errors match with errors.Is):
//
//	Desc                      Open, Conn.Receive      Map
//	Sealed(n), Sealed(0)      ok                      ok
//	Unsealed, PartlySealed    sealbuf.ErrNotSealed    ok (guarded / fixed size)
//	TmpfsFile                 sealbuf.ErrNotSealed    ok, as an unsealed memfd
//	Large(n > MaxSize)        sealbuf.ErrTooLarge     sealbuf.ErrTooLarge (MapMaxSize)
//	Pipe, Socket, RegularFile,
//	DevZero, OPath, Directory memfd.ErrNotMemfd       memfd.ErrNotMemfd
//
// # Peers
//
// A Peer holds one end of a UNIX socket pair (SOCK_SEQPACKET "unixpacket" or
// SOCK_STREAM "unix") and sends on it: Send (any header, 0 to 253
// descriptors, an empty packet), SendFiles, SendRaw (bytes with no frame
// prefix: garbage, forged frames), HangUpMidMessage (a frame cut at a chosen
// byte, then the hang-up), HangUp, and Kill (the peer dies at once). It also
// keeps memfds shared with the receiver — SendShared, or Share for one made
// here — and through Shared truncates them at a chosen moment (Truncate,
// which returns once it is done, also from inside a Mapping.Access
// callback), grows them, rewrites them (WriteAt), seals them after the fact
// (AddSeals), or cuts and regrows them over and over (Flap) while the
// receiver reads. Every memfd a Desc makes holds Pattern's bytes, which
// IsPattern checks without allocating.
//
// NewPeer runs the peer in a goroutine; StartPeer runs it in a separate
// process, which is what a truncation "by another process" or a producer
// that dies mid-message really needs. StartPeer re-executes the test binary,
// which must hand control to the peer before running tests:
//
//	func TestMain(m *testing.M) { sealtest.Main(m) }
//
// (or call RunPeer first thing in your own TestMain, or in an init function
// of a _test.go file). Start is the one-line set-up for a test: a socket
// pair, a peer process on one end, the other end returned, all closed when
// the test ends.
//
// # Leaks
//
// CountFDs and CountMaps count this process's descriptors (/proc/self/fd)
// and memfd mappings (/proc/self/maps). CheckLeaks(t) records both, turns the
// garbage collector off so that no finalizer can close a forgotten
// descriptor, and fails t if the numbers differ when the test ends;
// NewBaseline and Baseline.Check are the same without a testing.TB.
//
// sealtest is for tests: it creates files, starts processes and changes the
// garbage collector's setting. It is Linux only, like sealbuf.
package sealtest
