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
//	memfd sealed shrink (+grow) only   fixed size, contents may change             Map → *Mapping (no fault on tmpfs)
//	memfd with no shrink seal          size may change at any moment               Map → *Mapping, every access guarded
//
// The middle row has one exception: a peer can punch a page out of a
// hugetlbfs memfd (fallocate) unless it is sealed against writes, and
// touching that page faults once the huge page pool is empty. Map guards
// such a memfd like an unsealed one, and the fault reads as ErrTruncated.
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
// Conn.ReceiveMappings receives such memfds and maps them with Map.
//
// # Connecting two processes
//
// A Conn is one end of a UNIX socket. Pair makes a connected pair for a
// child process you start: the child finds its end with ExtraFile and
// wraps it with FileConn. Processes that find each other by name use Listen
// and Dial, with a socket path or an "@name" in the abstract namespace.
// NewConn wraps a *net.UnixConn made some other way. SendContext and
// ReceiveContext end a wait with a context, and SetDeadline and its kin set
// deadlines; WithWait trades CPU for latency in how a side waits for its
// peer.
//
// # A stream of messages: package pool
//
// A fresh sealed memfd per message pays for fresh pages every time, which
// on normal pages costs more than copying the bytes through a socket (the
// README's Speed section has the figures). Package pool
// (github.com/sealbuf/sealbuf/pool) is the fastest path for a producer that
// keeps writing: fixed-size slots in one memfd, sealed against resizing and
// mapped once by each side, reused from message to message. Its contents
// are not immutable like a Sealed's: see its documentation.
//
// # Ownership
//
// Every type owns its descriptor and mapping exactly once and releases them
// in Close; nothing relies on finalizers. Functions that take an *os.File
// (Open, Map, FileConn) own it on success only: on error it stays the
// caller's, open and unchanged. Send borrows its buffers; Receive's buffers
// belong to the caller. After Close every method returns an error wrapping
// os.ErrClosed.
//
// # Sizes: int and int64
//
// A size of memory this process makes or indexes is an int: New's size,
// Len, a pool's slot size and header limit (they are slice lengths). A
// limit on what a peer may hand over is an int64: MaxSize, MapMaxSize,
// pool.WithMaxSize, and a huge page size (WithHugePages). A peer's memfd
// can be larger than an int holds on a 32-bit port, and such a limit must
// be able to say so; anything that passes it is then mapped and measured
// as an int.
//
// # Examples
//
// ExamplePair runs a producer and a consumer in two processes; ExampleConn
// shows the same exchange over a socket pair in one; ExampleMap reads a
// memfd a peer truncates. The pool's ExampleNew streams through slots.
package sealbuf
