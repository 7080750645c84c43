//go:build linux

package sealbuf_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
)

// newMapping maps a fresh memfd of size bytes holding pattern, with seals,
// through a descriptor opened with flag. It returns the peer's handle on the
// memfd too.
func newMapping(t *testing.T, size int64, seals memfd.Seals, flag int, opts ...sealbuf.MapOption) (*sealbuf.Mapping, *memfd.File) {
	t.Helper()
	f := newTestMemfd(t, size, seals)
	m, err := sealbuf.Map(procOpen(t, f, flag), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m, f
}

func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(buf, []byte(" ["))
	return string(id)
}

func TestMapZeroSize(t *testing.T) {
	for _, seals := range []memfd.Seals{0, memfd.SealShrink, memfd.SealImmutable} {
		t.Run(seals.String(), func(t *testing.T) {
			m, f := newMapping(t, 0, seals, os.O_RDWR)
			require.Equal(t, 0, m.Len())
			err := m.Access(func(b []byte) error {
				require.Empty(t, b, "fn gets an empty window")
				return nil
			})
			require.NoError(t, err)
			n, err := m.ReadAt(make([]byte, 4), 0)
			require.Zero(t, n)
			require.ErrorIs(t, err, io.EOF)
			n, err = m.ReadAt(nil, 0)
			require.Zero(t, n)
			require.ErrorIs(t, err, io.EOF)
			n, err = m.WriteAt([]byte("x"), 0)
			require.Zero(t, n)
			require.Error(t, err, "WriteAt never grows the file")
			require.NotErrorIs(t, err, sealbuf.ErrTruncated)
			size, err := f.Size()
			require.NoError(t, err)
			require.Zero(t, size)

			if !seals.Has(memfd.SealGrow) {
				// The peer grows it: the Mapping stays 0 bytes.
				require.NoError(t, f.Truncate(4096))
				require.Equal(t, 0, m.Len())
				n, err = m.ReadAt(make([]byte, 4), 0)
				require.Zero(t, n)
				require.ErrorIs(t, err, io.EOF)
				require.NoError(t, m.Access(func([]byte) error { return nil }))
			}
			require.NoError(t, m.Close())
			requireClosed(t, m.Close())
			requireClosed(t, m.Access(func([]byte) error {
				t.Error("fn called after Close")
				return nil
			}))
			_, err = m.ReadAt(make([]byte, 4), 0)
			requireClosed(t, err)
		})
	}
}

func TestMapReadAt(t *testing.T) {
	const size = 3*4096 + 10
	want := patternBytes(size)
	for _, seals := range []memfd.Seals{0, memfd.SealShrink, memfd.SealShrink | memfd.SealGrow, memfd.SealImmutable} {
		t.Run(seals.String(), func(t *testing.T) {
			m, _ := newMapping(t, size, seals, os.O_RDWR)
			require.Equal(t, size, m.Len())
			p := make([]byte, 100)
			for _, off := range []int64{0, 4000, 4096, size - 100} {
				n, err := m.ReadAt(p, off)
				require.NoError(t, err)
				require.Equal(t, 100, n)
				require.Equal(t, want[off:off+100], p)
			}
			n, err := m.ReadAt(p, size-30)
			require.ErrorIs(t, err, io.EOF)
			require.NotErrorIs(t, err, sealbuf.ErrTruncated)
			require.Equal(t, 30, n)
			require.Equal(t, want[size-30:], p[:30])
			for _, off := range []int64{size, size + 1, 1 << 50} {
				n, err = m.ReadAt(p, off)
				require.ErrorIs(t, err, io.EOF)
				require.Zero(t, n)
			}
			n, err = m.ReadAt(p, -1)
			require.Error(t, err)
			require.Zero(t, n)

			var _ io.ReaderAt = m
			got, err := io.ReadAll(io.NewSectionReader(m, 0, 1<<40))
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, got))
		})
	}
}

func TestMapWriteAt(t *testing.T) {
	const size = 2*4096 + 7
	for _, seals := range []memfd.Seals{0, memfd.SealShrink, memfd.SealShrink | memfd.SealGrow} {
		t.Run(seals.String(), func(t *testing.T) {
			m, f := newMapping(t, size, seals, os.O_RDWR)
			var _ io.WriterAt = m

			n, err := m.WriteAt([]byte("hello"), 4094)
			require.NoError(t, err)
			require.Equal(t, 5, n)
			got := make([]byte, 5)
			_, err = f.ReadAt(got, 4094)
			require.NoError(t, err)
			require.Equal(t, "hello", string(got), "WriteAt reaches the memfd")

			n, err = m.WriteAt([]byte("end"), size-3)
			require.NoError(t, err)
			require.Equal(t, 3, n)

			n, err = m.WriteAt(nil, size)
			require.NoError(t, err, "an empty write at Len is fine")
			require.Zero(t, n)

			before := make([]byte, size)
			_, err = f.ReadAt(before, 0)
			require.NoError(t, err)
			for _, c := range []struct {
				off int64
				n   int
			}{{size - 2, 3}, {size, 1}, {size + 1, 1}, {1 << 40, 1}, {0, size + 1}, {-1, 1}} {
				n, err := m.WriteAt(make([]byte, c.n), c.off)
				require.Error(t, err, "%d bytes at %d", c.n, c.off)
				require.Zero(t, n, "past Len WriteAt fails with n = 0")
				require.NotErrorIs(t, err, sealbuf.ErrTruncated)
			}
			after := make([]byte, size+10)
			n, err = f.ReadAt(after, 0)
			require.ErrorIs(t, err, io.EOF)
			require.Equal(t, size, n, "WriteAt never changes the file's size")
			require.Equal(t, before, after[:n], "a refused write writes nothing")

			// What WriteAt wrote, ReadAt and Access see.
			p := make([]byte, 5)
			_, err = m.ReadAt(p, 4094)
			require.NoError(t, err)
			require.Equal(t, "hello", string(p))
			require.NoError(t, m.Access(func(b []byte) error {
				if string(b[size-3:]) != "end" {
					return errors.New("Access does not see WriteAt's bytes")
				}
				b[0] = 'A' // stores through Access reach the memfd too
				return nil
			}))
			_, err = f.ReadAt(p[:1], 0)
			require.NoError(t, err)
			require.Equal(t, byte('A'), p[0])
		})
	}
}

func TestMapPeerWritesVisible(t *testing.T) {
	for _, seals := range []memfd.Seals{0, memfd.SealShrink} {
		for _, flag := range []int{os.O_RDONLY, os.O_RDWR} {
			t.Run(fmt.Sprintf("%v/%#x", seals, flag), func(t *testing.T) {
				m, f := newMapping(t, 1<<16, seals, flag)
				_, err := f.WriteAt([]byte("peer wrote this"), 40000)
				require.NoError(t, err)
				p := make([]byte, 15)
				_, err = m.ReadAt(p, 40000)
				require.NoError(t, err)
				require.Equal(t, "peer wrote this", string(p))
				require.NoError(t, m.Access(func(b []byte) error {
					if string(b[40000:40015]) != "peer wrote this" {
						return errors.New("Access does not see the peer's bytes")
					}
					return nil
				}))
				// In a child process as well.
				require.NoError(t, runPeer(f, "grow-write", "65536:100:from a child"))
				_, err = m.ReadAt(p[:12], 100)
				require.NoError(t, err)
				require.Equal(t, "from a child", string(p[:12]))
			})
		}
	}
}

// A memfd sealed against shrinking cannot fault: Map skips the guard.
func TestMapShrinkSealedUnguarded(t *testing.T) {
	for _, seals := range []memfd.Seals{memfd.SealShrink, memfd.SealShrink | memfd.SealGrow, memfd.SealImmutable} {
		t.Run(seals.String(), func(t *testing.T) {
			m, f := newMapping(t, 3*4096, seals, os.O_RDWR)
			var guarded bool
			require.NoError(t, m.Access(func(b []byte) error {
				guarded = debug.SetPanicOnFault(false)
				debug.SetPanicOnFault(guarded)
				sinkSum = [32]byte{b[0], b[len(b)-1]}
				return nil
			}))
			require.False(t, guarded, "a shrink-sealed mapping is read without the fault guard")
			p := make([]byte, 10)
			_, err := m.ReadAt(p, 4090)
			require.NoError(t, err)
			require.Equal(t, patternBytes(4100)[4090:], p)
			require.ErrorIs(t, f.Truncate(4096), unix.EPERM, "the seal holds")
			if !seals.Has(memfd.SealGrow) {
				require.NoError(t, f.Truncate(1<<20))
				require.Equal(t, 3*4096, m.Len())
			}
			if seals.Has(memfd.SealWrite) {
				_, err := m.WriteAt([]byte("x"), 0)
				require.Error(t, err, "a write-sealed memfd is mapped read-only")
			} else {
				_, err := m.WriteAt([]byte("x"), 0)
				require.NoError(t, err)
			}
		})
	}
}

// An unsealed memfd is read under the guard.
func TestMapUnsealedGuarded(t *testing.T) {
	m, _ := newMapping(t, 4096, 0, os.O_RDWR)
	var guarded bool
	require.NoError(t, m.Access(func([]byte) error {
		guarded = debug.SetPanicOnFault(true)
		debug.SetPanicOnFault(guarded)
		return nil
	}))
	require.True(t, guarded)
	require.False(t, debug.SetPanicOnFault(false), "the guard restores the setting")
}

func TestMapReadOnly(t *testing.T) {
	for _, c := range []struct {
		name string
		flag int
		opts []sealbuf.MapOption
	}{
		{"O_RDONLY", os.O_RDONLY, nil},
		{"MapReadOnly", os.O_RDWR, []sealbuf.MapOption{sealbuf.MapReadOnly()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, f := newMapping(t, 8192, 0, c.flag, c.opts...)
			n, err := m.WriteAt([]byte("x"), 0)
			require.Error(t, err)
			require.Zero(t, n)
			require.NotErrorIs(t, err, sealbuf.ErrTruncated)
			t.Log(err)
			got := make([]byte, 1)
			_, err = f.ReadAt(got, 0)
			require.NoError(t, err)
			require.Equal(t, pattern(0), got[0], "nothing written")
			p := make([]byte, 8192)
			n, err = m.ReadAt(p, 0)
			require.NoError(t, err)
			require.Equal(t, 8192, n)
			require.Equal(t, patternBytes(8192), p)
		})
	}
}

func TestMapAccess(t *testing.T) {
	m, _ := newMapping(t, 5000, 0, os.O_RDWR)
	sentinel := errors.New("fn's own error")
	caller := goroutineID()
	calls := 0
	err := m.Access(func(b []byte) error {
		calls++
		require.Len(t, b, 5000, "fn gets the whole Len-byte window")
		require.Equal(t, caller, goroutineID(), "fn runs on the calling goroutine")
		return sentinel
	})
	require.Equal(t, 1, calls)
	require.ErrorIs(t, err, sentinel, "Access returns fn's error when nothing faulted")
	require.NotErrorIs(t, err, sealbuf.ErrTruncated)
	require.NoError(t, m.Access(func([]byte) error { return nil }))
}

func TestMapRequireAndMaxSize(t *testing.T) {
	f := newTestMemfd(t, 8192, memfd.SealShrink)
	osf := procOpen(t, f, os.O_RDWR)
	closeLater(t, osf)
	m, err := sealbuf.Map(osf, sealbuf.MapRequire(memfd.SealGrow))
	require.Nil(t, m)
	require.ErrorIs(t, err, sealbuf.ErrNotSealed)
	require.True(t, sealNamed(err.Error(), memfd.SealGrow), "%v", err)
	m, err = sealbuf.Map(osf, sealbuf.MapMaxSize(8191))
	require.Nil(t, m)
	require.ErrorIs(t, err, sealbuf.ErrTooLarge)
	_, err = osf.Stat()
	require.NoError(t, err)
	m, err = sealbuf.Map(osf, sealbuf.MapMaxSize(8192), sealbuf.MapRequire(memfd.SealShrink))
	require.NoError(t, err)
	require.NoError(t, m.Close())
	_, err = osf.Stat()
	require.ErrorIs(t, err, os.ErrClosed, "on success the Mapping owned the file")
}

func TestMapAfterClose(t *testing.T) {
	for _, c := range []struct {
		name  string
		seals memfd.Seals
		flag  int
	}{
		{"unsealed", 0, os.O_RDWR},
		{"shrink-sealed", memfd.SealShrink, os.O_RDWR},
		{"read-only", 0, os.O_RDONLY},
		{"write-sealed", memfd.SealImmutable, os.O_RDWR},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, f := newMapping(t, 8192, c.seals, c.flag)
			require.NoError(t, m.Close())
			require.Equal(t, 8192, m.Len())
			requireClosed(t, m.Close(), "second Close")

			err := m.Access(func([]byte) error {
				t.Error("fn called after Close")
				return nil
			})
			requireClosed(t, err, "Access")
			for _, off := range []int64{0, 8000, 8192, 9000, -1} {
				for _, n := range []int{0, 10} {
					k, err := m.ReadAt(make([]byte, n), off)
					requireClosed(t, err, "ReadAt(%d bytes at %d)", n, off)
					require.Zero(t, k)
					k, err = m.WriteAt(make([]byte, n), off)
					requireClosed(t, err, "WriteAt(%d bytes at %d)", n, off)
					require.Zero(t, k)
				}
			}
			// The memfd itself lives on in the peer, unchanged.
			size, err := f.Size()
			require.NoError(t, err)
			require.Equal(t, int64(8192), size)
		})
	}
}

// Close refuses new accesses at once, waits for running ones, returns nil.
func TestMapCloseWaitsForAccess(t *testing.T) {
	for _, seals := range []memfd.Seals{0, memfd.SealShrink} {
		t.Run(seals.String(), func(t *testing.T) {
			m, _ := newMapping(t, 8192, seals, os.O_RDWR)
			inside, release := make(chan struct{}), make(chan struct{})
			accessDone := make(chan error, 1)
			var fnReturned atomic.Bool
			go func() {
				accessDone <- m.Access(func(b []byte) error {
					close(inside)
					<-release
					sinkByte = b[8191] // still mapped: Close waits
					fnReturned.Store(true)
					return nil
				})
			}()
			<-inside

			closeDone := make(chan error, 1)
			go func() {
				err := m.Close()
				if !fnReturned.Load() {
					err = errors.New("Close returned while fn was running")
				}
				closeDone <- err
			}()

			// New accesses are refused at once, while Close waits.
			deadline := time.Now().Add(5 * time.Second)
			for {
				err := m.Access(func([]byte) error { return nil })
				if err != nil {
					requireClosed(t, err)
					break
				}
				require.True(t, time.Now().Before(deadline), "Close never refused new accesses")
				time.Sleep(time.Millisecond)
			}
			called := false
			requireClosed(t, m.Access(func([]byte) error { called = true; return nil }))
			require.False(t, called, "fn called after Close began")
			_, err := m.ReadAt(make([]byte, 1), 0)
			requireClosed(t, err)
			_, err = m.WriteAt([]byte("x"), 0)
			requireClosed(t, err)

			select {
			case err := <-closeDone:
				t.Fatalf("Close returned (%v) while an Access was running", err)
			case <-time.After(50 * time.Millisecond):
			}
			close(release)
			require.NoError(t, <-accessDone)
			require.NoError(t, <-closeDone, "Close returns nil after waiting")
			requireClosed(t, m.Close())
		})
	}
}

// Many goroutines share one Mapping (go test -race).
func TestMapConcurrentUse(t *testing.T) {
	const chunk = 4096
	const workers = 8
	m, f := newMapping(t, chunk*workers, 0, os.O_RDWR)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			off := int64(w * chunk)
			mine := bytes.Repeat([]byte{byte(w + 1)}, chunk)
			p := make([]byte, chunk)
			for i := range 200 {
				if _, err := m.WriteAt(mine, off); err != nil {
					errs <- err
					return
				}
				if _, err := m.ReadAt(p, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(p, mine) {
					errs <- fmt.Errorf("worker %d round %d: read back other bytes", w, i)
					return
				}
				err := m.Access(func(b []byte) error {
					if !bytes.Equal(b[off:off+chunk], mine) {
						return fmt.Errorf("worker %d: Access sees other bytes", w)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	all := make([]byte, chunk*workers)
	_, err := f.ReadAt(all, 0)
	require.NoError(t, err)
	for w := range workers {
		require.Equal(t, bytes.Repeat([]byte{byte(w + 1)}, chunk), all[w*chunk:(w+1)*chunk])
	}
}

// TestMapReadOnlyWritePastEnd: on a read-only Mapping a write inside the
// window that touches bytes past the file's current end matches
// ErrTruncated (as every access past the end does) as well as saying the
// Mapping is read-only; below the end it is only read-only, and past the
// window only a write that cannot fit. (Found by FuzzMemfdOps: a Mapping
// turned read-only by a heal after future_write.)
func TestMapReadOnlyWritePastEnd(t *testing.T) {
	for _, how := range []struct {
		name string
		flag int
		opts []sealbuf.MapOption
	}{{"O_RDONLY", os.O_RDONLY, nil}, {"MapReadOnly", os.O_RDWR, []sealbuf.MapOption{sealbuf.MapReadOnly()}}} {
		t.Run(how.name, func(t *testing.T) {
			m, f := newMapping(t, 8192, 0, how.flag, how.opts...)
			require.NoError(t, f.Truncate(100))
			n, err := m.WriteAt(make([]byte, 10), 95)
			require.Zero(t, n)
			require.ErrorIs(t, err, sealbuf.ErrTruncated)
			require.ErrorContains(t, err, "read-only")
			n, err = m.WriteAt(make([]byte, 10), 0)
			require.Zero(t, n)
			require.ErrorContains(t, err, "read-only")
			require.NotErrorIs(t, err, sealbuf.ErrTruncated, "below the end it is only read-only")
			_, err = m.WriteAt(make([]byte, 10), 8190)
			require.NotErrorIs(t, err, sealbuf.ErrTruncated, "past the window: cannot fit, not truncated")
		})
	}
}
