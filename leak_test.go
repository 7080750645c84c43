//go:build linux

package sealbuf_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/internal/testutil"
	"github.com/sealbuf/sealbuf/memfd"
)

// mapsSlack is how many /proc/self/maps lines the runtime may add on its
// own over a loop (heap growth with the collector off, new thread stacks).
// A leak adds one line per cycle, thousands in all. Under -race the race
// runtime maps shadow memory for the growing heap, so there only the memfd
// mappings are counted exactly.
const mapsSlack = 8

// requireFlat runs cycles iterations of cycle with the garbage collector
// off, so that no finalizer can close a forgotten descriptor, and checks
// that /proc/self/fd and /proc/self/maps are as large as before.
func requireFlat(t *testing.T, cycles int, cycle func(i int) error) {
	t.Helper()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	// Warm up whatever the runtime and the library set up once.
	for i := range 3 {
		require.NoError(t, cycle(i))
	}
	before, maps := testutil.Snap(t), testutil.CountMaps(t)
	start := time.Now()
	for i := range cycles {
		if err := cycle(i); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	t.Logf("%d cycles in %v", cycles, time.Since(start))
	testutil.RequireFlat(t, before, "descriptors and memfd mappings before and after %d cycles", cycles)
	if testutil.Race {
		t.Logf("-race: /proc/self/maps went from %d to %d lines", maps, testutil.CountMaps(t))
		return
	}
	require.InDelta(t, maps, testutil.CountMaps(t), mapsSlack, "mappings before and after %d cycles", cycles)
}

// The producer and the immutable consumer, all the way round.
func TestNoLeaksSealOpen(t *testing.T) {
	payload := []byte("payload")
	p := make([]byte, 64)
	requireFlat(t, 10000, func(i int) error {
		b, err := sealbuf.New(64 + i%3)
		if err != nil {
			return err
		}
		copy(b.Bytes(), payload)
		s, err := b.Seal()
		if err != nil {
			return err
		}
		if err := b.Close(); err != nil {
			return err
		}
		f, err := procOpenErr(s.File(), os.O_RDONLY)
		if err != nil {
			return err
		}
		o, err := sealbuf.Open(f, sealbuf.MaxSize(1<<20))
		if err != nil {
			return err
		}
		if string(o.Bytes()[:7]) != "payload" {
			return errors.New("wrong bytes")
		}
		if _, err := o.ReadAt(p, 0); err != nil {
			return err
		}
		if err := o.Close(); err != nil {
			return err
		}
		_ = s.Bytes()
		if err := s.Close(); err != nil {
			return err
		}
		fb, err := sealbuf.FromBytes(payload[:i%8])
		if err != nil {
			return err
		}
		_ = fb.Bytes()
		return fb.Close()
	})
}

// Every refusal releases what it made and leaves the caller's file alone
// (which the cycle then closes itself).
func TestNoLeaksRefusals(t *testing.T) {
	unsealed := newTestMemfd(t, 4096, 0)
	sealed := newTestMemfd(t, 4096, memfd.SealImmutable)
	requireFlat(t, 2000, func(i int) error {
		if b, err := sealbuf.New(-1); err == nil || b != nil {
			return errors.New("New(-1) worked")
		}
		if b, err := sealbuf.New(math.MaxInt>>1 + 1); err == nil || b != nil {
			return errors.New("New(1<<62) worked")
		}
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		if _, err := sealbuf.Open(r); !errors.Is(err, memfd.ErrNotMemfd) {
			return fmt.Errorf("Open(pipe): %v", err)
		}
		if _, err := sealbuf.Map(w); !errors.Is(err, memfd.ErrNotMemfd) {
			return fmt.Errorf("Map(pipe): %v", err)
		}
		r.Close()
		w.Close()
		for _, c := range []struct {
			src  *memfd.File
			opts []sealbuf.OpenOption
			want error
		}{
			{unsealed, nil, sealbuf.ErrNotSealed},
			{sealed, []sealbuf.OpenOption{sealbuf.Require(memfd.SealSeal)}, sealbuf.ErrNotSealed},
			{sealed, []sealbuf.OpenOption{sealbuf.MaxSize(4095)}, sealbuf.ErrTooLarge},
		} {
			f, err := procOpenErr(c.src, os.O_RDONLY)
			if err != nil {
				return err
			}
			if _, err := sealbuf.Open(f, c.opts...); !errors.Is(err, c.want) {
				return fmt.Errorf("Open: %v, want %v", err, c.want)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("the refused file was closed already: %w", err)
			}
		}
		f, err := procOpenErr(unsealed, os.O_RDWR)
		if err != nil {
			return err
		}
		if _, err := sealbuf.Map(f, sealbuf.MapMaxSize(1)); !errors.Is(err, sealbuf.ErrTooLarge) {
			return fmt.Errorf("Map: %v", err)
		}
		return f.Close()
	})
}

// Seal failing with EBUSY, then Close.
func TestNoLeaksSealFailure(t *testing.T) {
	name := fmt.Sprintf("sealbuf-leak-busy-%d", time.Now().UnixNano())
	requireFlat(t, 200, func(i int) error {
		b, err := sealbuf.New(8192, sealbuf.WithName(name))
		if err != nil {
			return err
		}
		other := testutil.MemfdByName(t, name)
		rc, err := other.SyscallConn()
		if err != nil {
			return err
		}
		var mem []byte
		var merr error
		if err := rc.Control(func(fd uintptr) {
			mem, merr = unix.Mmap(int(fd), 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		}); err != nil {
			return err
		}
		if merr != nil {
			return merr
		}
		other.Close()
		if _, err := b.Seal(); !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("Seal: %v, want EBUSY", err)
		}
		if err := unix.Munmap(mem); err != nil {
			return err
		}
		return b.Close()
	})
}

// Map, fault, patch, heal, fault again, Close.
func TestNoLeaksMapTruncate(t *testing.T) {
	const size = 64 << 10
	buf := make([]byte, size)
	requireFlat(t, 2000, func(i int) error {
		f, err := memfd.Create("leak-map")
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			return err
		}
		osf, err := procOpenErr(f, os.O_RDWR)
		if err != nil {
			return err
		}
		m, err := sealbuf.Map(osf)
		if err != nil {
			osf.Close()
			return err
		}
		if _, err := m.ReadAt(buf, 0); err != nil {
			return err
		}
		for range 2 {
			if err := f.Truncate(4096); err != nil {
				return err
			}
			if _, err := m.ReadAt(buf, 0); !errors.Is(err, sealbuf.ErrTruncated) {
				return fmt.Errorf("ReadAt after the cut: %v", err)
			}
			if err := m.Access(func(b []byte) error { sinkByte = b[size-1]; return nil }); !errors.Is(err, sealbuf.ErrTruncated) {
				return fmt.Errorf("Access after the cut: %v", err)
			}
			if err := f.Truncate(size); err != nil {
				return err
			}
			if _, err := m.ReadAt(buf, 0); err != nil {
				return fmt.Errorf("ReadAt after growing back: %w", err)
			}
		}
		if i%2 == 0 {
			// Close while poisoned.
			if err := f.Truncate(4096); err != nil {
				return err
			}
			if _, err := m.WriteAt(buf[:10], size-10); !errors.Is(err, sealbuf.ErrTruncated) {
				return fmt.Errorf("WriteAt after the cut: %v", err)
			}
		}
		return m.Close()
	})
}
