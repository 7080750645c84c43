// Package sealbuf makes shared memory between processes safe and zero-copy.
//
// A producer fills a memfd, seals it, and hands its descriptor to another
// process over a UNIX socket; the consumer verifies the seals and reads the
// bytes in place, with no copy and no way for the producer to change or
// shrink them underneath. Where a peer hands over a memfd that is not sealed
// against shrinking, every access goes through a fault guard, so a
// truncation by the peer becomes an error value instead of a SIGBUS that
// kills the process.
//
// # Three levels of trust
//
//	the consumer gets                  guarantee                                   API
//	memfd sealed shrink+grow+write     immutable bytes, fixed size: plain []byte   Open → *Sealed
//	memfd sealed shrink (+grow) only   fixed size, contents may change             Map → *Mapping (no fault possible)
//	memfd with no shrink seal          size may change at any moment               Map → *Mapping, every access guarded
//
// # Producer
//
// New returns a writable *Buffer; Seal turns it into an immutable *Sealed.
// FromBytes makes a *Sealed from bytes already in hand, the cheapest way
// (pwrite into a fresh memfd). Conn.Send hands Sealed buffers to a peer.
//
// # Consumer
//
// Conn.Receive (or Open, for a descriptor received some other way) verifies
// that each descriptor is a memfd sealed shrink|grow|write and maps it
// read-only: Sealed.Bytes can be read like any slice, and cannot fault.
// Map is for memfds a peer may still resize: its accesses (ReadAt, WriteAt,
// Access) return ErrTruncated when the file shrank under them.
//
// # Ownership
//
// Every type owns its descriptor and mapping exactly once and releases them
// in Close; nothing relies on finalizers. Functions that take an *os.File
// (Open, Map) own it on success only: on error it stays the caller's, open
// and unchanged. Send borrows its buffers; Receive's buffers belong to the
// caller. After Close every method returns an error wrapping os.ErrClosed.
package sealbuf
