// Package sigbus turns memory faults on a shared mapping into errors.
//
// A process that maps a file it does not control — a memfd received from a
// peer without F_SEAL_SHRINK, say — can be killed at any moment: when the peer
// truncates the file, every access to a page past the new end raises SIGBUS,
// and the Go runtime's default answer is "fatal error: fault". (On hugetlbfs
// a page the peer punched out of the file faults the same way, inside the
// file's size, whenever the huge page pool has no free page to replace it;
// F_SEAL_SHRINK does not prevent that, F_SEAL_WRITE does.) [Guard] runs a
// function with [runtime/debug.SetPanicOnFault] enabled, recovers the panic
// the runtime raises instead, checks that the fault address lies inside the
// guarded slice and returns a [*FaultError]. Any other panic, including a
// fault anywhere else, is re-panicked unchanged: it is a bug, not a peer's
// doing.
//
// Guard only reports; it never changes the mapping. The same access faults
// again on the next call. Deciding what to do next (remap, poison, give up)
// is the caller's job.
//
// # What Guard cannot catch
//
// SetPanicOnFault is a property of one goroutine, and the runtime can only
// turn a fault into a panic when the faulting instruction runs as ordinary Go
// code on that goroutine. These faults still crash the whole process:
//
//   - Access from another goroutine. The setting is per goroutine and is not
//     inherited by a go statement, not even one started inside fn.
//   - Access from cgo (C code reading the mapping; golang/go#41155).
//   - Access from runtime code that holds locks or runs on the system stack:
//     the builtin print and println of mapped bytes, code pinned to its P
//     (procPin, reachable only through linkname).
//   - sync/atomic on the mapping in a binary built with -race: the race
//     runtime's atomic faults on the system stack when the truncation lands
//     after its probe.
//
// Two more cases are recovered but leave damage behind: a map whose keys
// alias the mapping faults while it is marked as being written, and its next
// write dies with "concurrent map writes"; and an access after munmap is
// only a fault while the range stays unmapped — once the runtime or another
// mmap reuses it, the access silently reads or writes foreign memory.
//
// System calls given a mapped buffer do not fault at all: they fail with
// EFAULT, possibly after a partial transfer.
//
// # Staying inside the guard
//
// Do every access to the mapping inside fn, on the goroutine that called
// Guard. Never let a slice, string or pointer that aliases the mapping escape
// fn — not into a return value, a map key, a channel, a fmt or log call, or
// another goroutine. Copy what you need out of the mapping inside fn, and
// validate the copy afterwards (the peer may still be writing).
//
// After a fault, whatever fn was writing is undefined: copy and other
// memmove-based operations may have moved nothing or only part of the bytes,
// and not necessarily a prefix (memmove can load the last word first). The
// fault address is not always the first byte that failed either; take the
// valid length of the file from fstat, not from [FaultError.Offset].
//
// A guard costs a few nanoseconds; a recovered fault costs a couple of
// microseconds. Guard one whole operation, not each byte.
package sigbus
