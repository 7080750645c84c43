// Package iosafety is a go/analysis pass that finds I/O-safety hazards:
// code that uses a raw file descriptor number it does not own, keeps one
// longer than it is borrowed, or depends on state that a descriptor shares
// with other holders of its open file description.
//
// It is the Go translation of Rust's I/O-safety rules (RFC 3128): the owner
// of a descriptor is an *os.File (OwnedFd), a syscall.RawConn callback is a
// borrow (BorrowedFd), and a bare int is a raw pointer. Each diagnostic
// starts with a stable category, which is also its Category field and the
// name to use in an //iosafety:allow directive or in -disable:
//
//   - fd-call: a call of (*os.File).Fd. Fd switches the descriptor to
//     blocking mode, and the number it returns is owned by nothing: the File
//     may be closed and the number reused while it is still in use. Borrow
//     the descriptor with SyscallConn().Control instead; a suggested fix
//     rewrites a statement that uses the number into a Control callback.
//     Also reported: File() of a net connection or listener (TCPConn,
//     UnixConn, UDPConn, IPConn, TCPListener, UnixListener) whose result is
//     used only for Fd (and Close): File dups the descriptor and switches it
//     to blocking mode just to read a number. os.Stdin, os.Stdout and
//     os.Stderr are not reported.
//
//   - fd-escape: the fd parameter of a Control, Read or Write callback of a
//     syscall.RawConn (or of any method with that shape, or a Control method
//     taking a func(fd int) callback) escapes the callback: it is assigned to
//     a variable declared outside it, stored in a struct field, slice, map
//     or through a pointer, sent on a channel, or captured by a goroutine or
//     a closure stored outside. The number is valid only while the callback
//     runs.
//
//   - fd-field: a struct field that holds a bare descriptor: of type int,
//     int32 or uintptr (or a named type, slice or array of those) and named
//     like one (fd, Fd, FD, sockFd, memFD, pidfd, nfd, fds, …), or assigned
//     the result of a descriptor-creating call (unix.Socket, unix.Open,
//     unix.MemfdCreate, unix.Dup, unix.Accept, unix.Eventfd, …, or a function
//     of the package that returns one). Not reported: structs made only of
//     fixed-size integers (kernel ABI mirrors such as a pollfd), struct types
//     declared inside a function (transient result carriers), structs with
//     an integer pid field (the number is another process's descriptor, as
//     in /proc/PID/fd/N), fields with a struct tag (serialized data), and
//     scalar counts such as nfds, maxFd or numFDs.
//
//   - newfile: os.NewFile on a number that did not come straight from a
//     descriptor-creating call or from unix.ParseUnixRights: a constant, a
//     struct field or package-level variable, an Fd() result, a function
//     parameter, or a descriptor borrowed in a Control callback. Two owners
//     of one descriptor close it twice. Only numbers whose every source is
//     one of those are reported; numbers from other calls are not.
//
//   - borrowed-close: unix.Close or syscall.Close (or Dup2/Dup3 onto the
//     number, which closes it) of a descriptor borrowed from an *os.File:
//     the fd parameter of a Control callback or an Fd() result. The File
//     closes it again later, possibly after the number was reused.
//
//   - shared-state: on a descriptor received with unix.ParseUnixRights or
//     syscall.ParseUnixRights (tracked within the function, also through
//     os.NewFile): offset-based I/O (unix/syscall Read, Write, Seek, Readv,
//     Writev; Read, Write, Seek, ReadFrom, WriteString, WriteTo of the
//     *os.File), status-flag changes (FcntlInt F_SETFL, SetNonblock), and
//     flock or OFD locks (Flock, FcntlFlock F_OFD_SETLK/F_OFD_SETLKW). The
//     received descriptor shares its open file description, and with it the
//     offset, flags and locks, with the sender: use pread/pwrite (ReadAt,
//     WriteAt) and leave flags and locks alone.
//
//   - cloexec: a descriptor that is not close-on-exec leaks into every
//     child process. Reported: unix.Recvmsg, unix.RecvmsgBuffers or
//     syscall.Recvmsg whose constant flags lack MSG_CMSG_CLOEXEC; the
//     creating calls MemfdCreate, Open, Openat, Socket, Socketpair, Accept4,
//     Eventfd, EpollCreate1, InotifyInit1, Pipe2, Dup3, TimerfdCreate and
//     Signalfd whose constant flags lack their CLOEXEC flag (unless the
//     function calls CloseOnExec, the old ForkLock idiom); and FcntlInt
//     F_DUPFD instead of F_DUPFD_CLOEXEC. Flags that are not constant are not
//     judged. A suggested fix adds the flag. (*net.UnixConn).ReadMsgUnix
//     takes no flags and already passes MSG_CMSG_CLOEXEC on Linux, so it is
//     fine.
//
// Tracking is intra-procedural and flow-insensitive, by types.Object
// identity: a local variable carries the union of the sources assigned to
// it anywhere in the function, function literals included. Summaries
// within the package refine it: a call of a package function that returns
// only descriptors it created or received counts as such a source; the
// parameters of an unexported function that is only ever called directly,
// and of a function literal only called in sight, carry what their callers
// pass. Checks that forbid a source (newfile, borrowed-close) report only
// when every source is a forbidden one; checks that taint (shared-state,
// fd-escape) report when any is. Packages of the standard library and of
// golang.org/x/sys, which implement the owners, are not checked.
//
// A diagnostic is silenced by a comment on its line or the line above:
//
//	//iosafety:allow newfile inherited from systemd, adopted once
//
// naming one or more comma-separated categories (or "all"), followed by the
// reason. The -disable flag takes a comma-separated list of categories to
// turn off.
//
// Run it standalone or as a vet tool:
//
//	go run github.com/sealbuf/sealbuf/iosafety/cmd/iosafety@latest ./...
//	go install github.com/sealbuf/sealbuf/iosafety/cmd/iosafety@latest
//	go vet -vettool=$(go env GOPATH)/bin/iosafety ./...
package iosafety
