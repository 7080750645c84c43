//go:build linux

package sealbuf

import (
	"errors"
	"io"
	"sync/atomic"

	"golang.org/x/sys/cpu"

	"github.com/sealbuf/sealbuf/memfd"
)

// ConnStats are a Conn's counters, from NewConn on: cheap enough to be
// always on (atomic adds, no lock, no allocation per message), for a
// service to export. Each counter only grows, except MappedBytes. A pool
// built on the Conn counts its own messages (pool.Writer.Stats,
// pool.Reader.Stats); only its hello, received with ReceiveFiles, is
// counted here.
type ConnStats struct {
	// MessagesSent: messages Send, SendContext, SendAndClose and
	// SendFiles sent whole. BytesSent: their header bytes (a buffer's
	// contents never travel, and the stream framing is not counted).
	// FilesSent: their descriptors.
	MessagesSent uint64
	BytesSent    uint64
	FilesSent    uint64

	// MessagesReceived: messages Receive, ReceiveContext,
	// ReceiveMappings and ReceiveFiles returned without error.
	// BytesReceived: their header bytes. FilesReceived: their
	// descriptors, handed to the caller as a Sealed, a Mapping or a File.
	MessagesReceived uint64
	BytesReceived    uint64
	FilesReceived    uint64

	// Refused: messages read and dropped because of what the peer sent
	// (every descriptor they carried was closed), each counted once,
	// under the first reason found. Errors that drop no message — a hang-up,
	// a cancelled context, a deadline, a closed Conn — are not counted.
	RefusedNotMemfd     uint64 // a descriptor that is not a memfd (memfd.ErrNotMemfd)
	RefusedNotSealed    uint64 // a memfd lacking seals the policy requires (ErrNotSealed)
	RefusedTooLarge     uint64 // a memfd over MaxSize, or too large to map (ErrTooLarge)
	RefusedTooManyFiles uint64 // more descriptors than WithMaxFiles, or control data the kernel truncated (MSG_CTRUNC)
	RefusedMalformed    uint64 // not the wire format (ErrMalformed; a stream out of step counts once), or a frame cut short by the peer's hang-up
	RefusedShortBuffer  uint64 // a header longer than the caller's buffer (io.ErrShortBuffer)
	RefusedOther        uint64 // a descriptor that passed the checks but could not be mapped

	// MappedBytes: the bytes of the Sealed buffers (Receive,
	// ReceiveContext) and Mappings (ReceiveMappings) this Conn returned
	// that are still open: added when they are returned, taken off by
	// their Close (also after the Conn's Close). It is address space
	// shared with the peers, not necessarily resident memory.
	MappedBytes uint64
}

// Refused returns the sum of the Refused counters: every message refused.
func (s ConnStats) Refused() uint64 {
	return s.RefusedNotMemfd + s.RefusedNotSealed + s.RefusedTooLarge + s.RefusedTooManyFiles +
		s.RefusedMalformed + s.RefusedShortBuffer + s.RefusedOther
}

// Stats returns the Conn's counters, each read atomically without a lock
// (they are not one snapshot: a message being received may be counted in
// MessagesReceived and not yet in BytesReceived). It is safe to call at
// any time, from any goroutine, also after Close, and allocates nothing.
func (c *Conn) Stats() ConnStats {
	s := c.stats
	return ConnStats{
		MessagesSent:        s.messagesSent.Load(),
		BytesSent:           s.bytesSent.Load(),
		FilesSent:           s.filesSent.Load(),
		MessagesReceived:    s.messagesReceived.Load(),
		BytesReceived:       s.bytesReceived.Load(),
		FilesReceived:       s.filesReceived.Load(),
		RefusedNotMemfd:     s.refused[refusedNotMemfd].Load(),
		RefusedNotSealed:    s.refused[refusedNotSealed].Load(),
		RefusedTooLarge:     s.refused[refusedTooLarge].Load(),
		RefusedTooManyFiles: s.refused[refusedTooManyFiles].Load(),
		RefusedMalformed:    s.refused[refusedMalformed].Load(),
		RefusedShortBuffer:  s.refused[refusedShortBuffer].Load(),
		RefusedOther:        s.refused[refusedOther].Load(),
		MappedBytes:         s.mapped.Load(),
	}
}

// Refusal reasons, the indices of connStats.refused.
const (
	refusedNotMemfd = iota
	refusedNotSealed
	refusedTooLarge
	refusedTooManyFiles
	refusedMalformed
	refusedShortBuffer
	refusedOther
	refusalReasons
)

// connStats are a Conn's counters, in their own allocation: a received
// Sealed or Mapping points at mapped, and keeps only this alive. The
// sending counters (under SendMu) and the receiving ones (under RecvMu)
// sit on separate cache lines, as different goroutines update them.
type connStats struct {
	messagesSent, bytesSent, filesSent atomic.Uint64
	_                                  cpu.CacheLinePad
	messagesReceived, bytesReceived    atomic.Uint64
	filesReceived                      atomic.Uint64
	refused                            [refusalReasons]atomic.Uint64
	mapped                             atomic.Uint64
}

func (s *connStats) sent(header, files int) {
	s.messagesSent.Add(1)
	s.bytesSent.Add(uint64(header))
	s.filesSent.Add(uint64(files))
}

func (s *connStats) received(header, files int) {
	s.messagesReceived.Add(1)
	s.bytesReceived.Add(uint64(header))
	s.filesReceived.Add(uint64(files))
}

// readRefused counts a message the transport read and dropped (err from
// ReadMsg); other errors drop no message and are not counted.
func (s *connStats) readRefused(err error) {
	switch {
	case err == nil:
		return
	case errors.Is(err, ErrTooManyFiles):
		s.refused[refusedTooManyFiles].Add(1)
	case errors.Is(err, ErrMalformed), errors.Is(err, io.ErrUnexpectedEOF):
		s.refused[refusedMalformed].Add(1)
	case errors.Is(err, io.ErrShortBuffer):
		s.refused[refusedShortBuffer].Add(1)
	}
}

// openRefused counts a message dropped because one of its descriptors
// failed Open's or Map's checks, or could not be mapped.
func (s *connStats) openRefused(err error) {
	switch {
	case errors.Is(err, memfd.ErrNotMemfd):
		s.refused[refusedNotMemfd].Add(1)
	case errors.Is(err, ErrNotSealed):
		s.refused[refusedNotSealed].Add(1)
	case errors.Is(err, ErrTooLarge):
		s.refused[refusedTooLarge].Add(1)
	default:
		s.refused[refusedOther].Add(1)
	}
}

// track adds n mapped bytes, for a Sealed or Mapping whose Close takes
// them off again through the pointer it returns.
func (s *connStats) track(n int) *atomic.Uint64 {
	s.mapped.Add(uint64(n))
	return &s.mapped
}

// untrack takes n bytes off a gauge from track (nil: not tracked).
func untrack(g *atomic.Uint64, n int) {
	if g != nil {
		g.Add(-uint64(n))
	}
}
