//go:build linux

package sealtest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/sealbuf/sealbuf/internal/wire"
	"golang.org/x/sys/unix"
)

// engine is the peer itself: it holds the connection and the shared memfds
// and runs the Peer's commands, in a goroutine (NewPeer) or in a process of
// its own (StartPeer).
type engine struct {
	conn   *os.File // nil when there is none, or after a hang-up
	stream bool
	header []byte // pending header, sent by the next opSend
	held   map[uint32]*held
	nextID uint32
}

// held is a memfd the peer keeps, to resize or rewrite under its receiver.
type held struct {
	f    *os.File
	stop chan struct{} // non-nil while flapping
	done chan struct{}

	mu      sync.Mutex
	cycles  int
	flapErr error
}

// serve runs commands from ctl until opExit, opKill or the end of ctl. It
// starts with opHello carrying the process id.
func serve(ctl *net.UnixConn) error {
	e := &engine{held: map[uint32]*held{}}
	defer e.closeAll()
	if err := writeCtl(ctl, enc{opHello}.u64(uint64(os.Getpid())), nil); err != nil {
		return err
	}
	buf := make([]byte, ctlBufSize)
	oob := make([]byte, unix.CmsgSpace(4*maxCtlFiles))
	for {
		pkt, files, err := readCtl(ctl, buf, oob)
		if err == errEOF {
			return nil
		}
		if err != nil {
			return err
		}
		op := pkt[0]
		if op == opHeader {
			e.header = append(e.header, pkt[1:]...)
			closeAll(files)
			continue
		}
		value, err := e.do(op, &dec{b: pkt[1:]}, files)
		if op == opKill || op == opExit {
			e.closeAll()
		}
		if werr := writeCtl(ctl, reply(value, err), nil); werr != nil {
			return werr
		}
		if op == opKill || op == opExit {
			return nil
		}
	}
}

// do runs one command. It owns files.
func (e *engine) do(op byte, d *dec, files []*os.File) (uint64, error) {
	switch op {
	case opConn:
		if len(files) != 1 {
			closeAll(files)
			return 0, errors.New("want one descriptor")
		}
		return 0, e.setConn(files[0])
	case opSend:
		return e.send(d, files)
	case opShare:
		if len(files) != 1 {
			closeAll(files)
			return 0, errors.New("want one descriptor")
		}
		return uint64(e.keep(files[0])), nil
	}
	closeAll(files)
	switch op {
	case opHangUp:
		return 0, e.hangUp()
	case opKill, opExit:
		return 0, nil
	}
	id := d.u32()
	h := e.held[id]
	if d.err == nil && h == nil {
		d.err = fmt.Errorf("no shared memfd %d (released?)", id)
	}
	switch op {
	case opTruncate:
		size := int64(d.u64())
		if d.err != nil {
			return 0, d.err
		}
		return 0, h.f.Truncate(size)
	case opWrite:
		off, data := int64(d.u64()), d.rest()
		if d.err != nil {
			return 0, d.err
		}
		n, err := h.f.WriteAt(data, off)
		return uint64(n), err
	case opSize:
		if d.err != nil {
			return 0, d.err
		}
		st, err := h.f.Stat()
		if err != nil {
			return 0, err
		}
		return uint64(st.Size()), nil
	case opFlap:
		cut, size := int64(d.u64()), int64(d.u64())
		if d.err != nil {
			return 0, d.err
		}
		return 0, h.flap(cut, size)
	case opStopFlap:
		if d.err != nil {
			return 0, d.err
		}
		n, err := h.stopFlap()
		return uint64(n), err
	case opAddSeals:
		seals := d.u32()
		if d.err != nil {
			return 0, d.err
		}
		return 0, control(h.f, func(fd int) error {
			_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, int(seals))
			return os.NewSyscallError("fcntl F_ADD_SEALS", err)
		})
	case opRelease:
		if d.err != nil {
			return 0, d.err
		}
		delete(e.held, id)
		h.stopFlap()
		return 0, h.f.Close()
	}
	if d.err != nil {
		return 0, d.err
	}
	return 0, fmt.Errorf("unknown command %d", op)
}

func (e *engine) setConn(f *os.File) error {
	typ := -1
	err := control(f, func(fd int) error {
		var err error
		typ, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		return os.NewSyscallError("getsockopt SO_TYPE", err)
	})
	if err != nil {
		f.Close()
		return err
	}
	if e.conn != nil {
		e.conn.Close()
	}
	e.conn, e.stream = f, typ == unix.SOCK_STREAM
	return nil
}

func (e *engine) hangUp() error {
	if e.conn == nil {
		return errors.New("no connection (hung up already?)")
	}
	err := e.conn.Close()
	e.conn = nil
	return err
}

func (e *engine) keep(f *os.File) uint32 {
	e.nextID++
	e.held[e.nextID] = &held{f: f}
	return e.nextID
}

// send makes the descriptors the command describes and sends them, with the
// pending header and the extra files, as the mode says.
func (e *engine) send(d *dec, extra []*os.File) (uint64, error) {
	header := e.header
	e.header = nil
	mode, cut, keep, n := d.u8(), int(d.u32()), d.u8() != 0, int(d.u16())
	descs := make([]Desc, 0, min(n, maxCtlFiles))
	for i := 0; i < n && d.err == nil; i++ {
		descs = append(descs, d.desc())
	}
	if d.err != nil {
		closeAll(extra)
		return 0, d.err
	}
	if e.conn == nil {
		closeAll(extra)
		return 0, errors.New("no connection (hung up already?)")
	}
	files := make([]*os.File, 0, len(descs)+len(extra))
	defer func() { closeAll(files) }()
	for _, desc := range descs {
		f, err := desc.Create()
		if err != nil {
			closeAll(extra)
			return 0, err
		}
		files = append(files, f)
	}
	files = append(files, extra...)

	msg := header
	if e.stream && mode != modeRaw {
		msg = append(appendFrame(make([]byte, 0, frameLen+len(header)), len(header), len(files)), header...)
	}
	if mode == modePartial {
		if !e.stream {
			return 0, errors.New("a unixpacket message arrives whole or not at all: there is no middle to hang up in (use a \"unix\" stream socket)")
		}
		if cut < 1 || cut >= len(msg) {
			return 0, fmt.Errorf("cut %d is not in [1, %d): the %d-byte framed message", cut, len(msg), len(msg))
		}
		msg = msg[:cut]
	}
	err := withFDs(files, func(fds []int) error { return e.write(msg, fds) })
	if mode == modePartial {
		if herr := e.hangUp(); err == nil {
			err = herr
		}
	}
	if err != nil {
		return 0, err
	}
	if keep && len(descs) > 0 {
		id := e.keep(files[0])
		files = files[1:]
		return uint64(id), nil
	}
	return 0, nil
}

// write sends msg on the connection, the descriptors with its first bytes,
// looping over short writes on a stream.
func (e *engine) write(msg []byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	rc, err := e.conn.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for {
			var n int
			n, werr = wire.Sendmsg(int(fd), [][]byte{msg}, oob)
			if werr == unix.EAGAIN {
				return false
			}
			if werr != nil || !e.stream {
				return true
			}
			oob, msg = nil, msg[n:]
			if len(msg) == 0 {
				return true
			}
		}
	})
	if err != nil {
		return err
	}
	return os.NewSyscallError("sendmsg", werr)
}

// flap starts cutting the memfd to cut bytes and growing it back to size
// (writing Pattern's bytes back in with pwrite, so the bytes below the
// current end are always the pattern), over and over, until stopFlap.
func (h *held) flap(cut, size int64) error {
	if h.stop != nil {
		return errors.New("flapping already")
	}
	if cut < 0 || cut > size {
		return fmt.Errorf("cut %d is not in [0, size %d]", cut, size)
	}
	h.stop, h.done = make(chan struct{}), make(chan struct{})
	h.cycles, h.flapErr = 0, nil
	go func() {
		defer close(h.done)
		buf := make([]byte, 1<<16)
		for {
			select {
			case <-h.stop:
				return
			default:
			}
			// Chunks end on 64 KiB boundaries: every end of file the
			// regrowth passes through, but cut, is page-aligned.
			err := h.f.Truncate(cut)
			for off := cut; err == nil && off < size; {
				k := min(int64(len(buf))-off%int64(len(buf)), size-off)
				fillPattern(buf[:k], off)
				_, err = h.f.WriteAt(buf[:k], off)
				off += k
			}
			h.mu.Lock()
			if err != nil {
				h.flapErr = err
			} else {
				h.cycles++
			}
			h.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return nil
}

// stopFlap stops flapping (the memfd is then whole, size bytes) and returns
// the number of cycles run.
func (h *held) stopFlap() (int, error) {
	if h.stop == nil {
		return 0, errors.New("not flapping")
	}
	close(h.stop)
	<-h.done
	h.stop, h.done = nil, nil
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cycles, h.flapErr
}

func (e *engine) closeAll() {
	if e.conn != nil {
		e.conn.Close()
		e.conn = nil
	}
	for id, h := range e.held {
		if h.stop != nil {
			h.stopFlap()
		}
		h.f.Close()
		delete(e.held, id)
	}
}
