// Package memfd owns memfd descriptors: anonymous, memory-backed files made
// by memfd_create(2) that can be sealed against writes and size changes.
//
// A *File owns exactly one descriptor, held in an *os.File. The number is
// never stored or handed out: code that needs it borrows it for the length of
// a callback through SyscallConn().Control, during which the runtime keeps it
// from being closed and reused. All I/O is positional (pread/pwrite): the
// shared file offset and status flags of the open file description are never
// read or changed, so a descriptor shared with another process through
// SCM_RIGHTS, dup or fork behaves the same for both owners.
//
// Create makes a memfd that is always close-on-exec and allows sealing, and
// by default is also no-exec where the kernel has MFD_NOEXEC_SEAL (Linux
// 6.3+). FromFile adopts a descriptor received from elsewhere after checking
// that it really is a memfd; Seals and AddSeals read and apply the seals.
//
// Nothing in this package maps memory, so nothing in it can fault.
package memfd
