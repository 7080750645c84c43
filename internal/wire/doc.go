//go:build linux

// Package wire is sealbuf's one transport: everything between a message's
// bytes and the kernel, written once for sealbuf.Conn and for the pool.
//
//   - rights.go, frame.go: the parts of a message that are not the caller's
//     bytes — SCM_RIGHTS control messages (and the descriptors the
//     receiver's own socket options add, which are closed), and the 8-byte
//     frame prefix that keeps a header with its descriptors on a stream
//     socket. They parse untrusted input and allocate nothing when the
//     caller's slices have room.
//   - msg.go: sendmsg, recvmsg and recvmmsg as raw, non-blocking calls.
//   - conn.go, send.go, read.go: Conn, one connected AF_UNIX socket — the
//     send loop (short writes, a full socket), the read loop (EINTR, the
//     single read-again after ECONNRESET, EAGAIN → spin → kernel wait →
//     park in Go's netpoller), and the one mapping of errors to io.EOF and
//     os.ErrClosed.
//   - message.go: exact message reading for sealbuf.Conn (a packet, or one
//     stream frame and no byte more), with the descriptor limits.
//   - waiter.go: the context and deadline waiter that lets a blocked read or
//     write end on a context without allocating.
//   - wait.go: the wait policy (spin, then wait in the kernel, then park),
//     the one knob of the transport.
package wire
