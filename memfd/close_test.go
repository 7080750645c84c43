//go:build linux

package memfd_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf/memfd"
)

func TestCloseTwice(t *testing.T) {
	m, err := memfd.Create("twice")
	require.NoError(t, err)
	require.NoError(t, m.Close())
	err = m.Close()
	require.Error(t, err)
	require.ErrorIs(t, err, os.ErrClosed)
	require.Equal(t, "twice", m.Name())
}

// After Close every method fails with an error wrapping os.ErrClosed.
func TestMethodsAfterClose(t *testing.T) {
	m, err := memfd.Create("closed")
	require.NoError(t, err)
	_, err = m.WriteAt([]byte("data"), 0)
	require.NoError(t, err)
	require.NoError(t, m.Close())

	requireClosed := func(what string, err error) {
		t.Helper()
		require.Error(t, err, what)
		require.ErrorIs(t, err, os.ErrClosed, "%s: %v", what, err)
	}

	require.NotPanics(t, func() {
		size, err := m.Size()
		requireClosed("Size", err)
		require.Zero(t, size)

		requireClosed("Truncate", m.Truncate(0))

		n, err := m.ReadAt(make([]byte, 4), 0)
		requireClosed("ReadAt", err)
		require.NotEqual(t, io.EOF, err)
		require.Zero(t, n)

		n, err = m.WriteAt([]byte("x"), 0)
		requireClosed("WriteAt", err)
		require.Zero(t, n)

		_, err = m.Seals()
		requireClosed("Seals", err)

		requireClosed("AddSeals", m.AddSeals(memfd.SealShrink))

		r, err := m.ReopenReadOnly()
		requireClosed("ReopenReadOnly", err)
		require.Nil(t, r)

		called := false
		requireClosed("Control", m.Control(func(int) error { called = true; return nil }))
		require.False(t, called, "Control must not call fn after Close")

		requireClosed("Close", m.Close())
	})
	require.Equal(t, "closed", m.Name())
}

// SyscallConn after Close: either SyscallConn itself or the RawConn's Control
// must report an error wrapping os.ErrClosed (not Go's untranslated "use of
// closed file"), and fn must not run.
func TestSyscallConnAfterClose(t *testing.T) {
	m, err := memfd.Create("closed-rawconn")
	require.NoError(t, err)
	require.NoError(t, m.Close())

	require.NotPanics(t, func() {
		rc, err := m.SyscallConn()
		if err != nil {
			require.ErrorIs(t, err, os.ErrClosed, "SyscallConn after Close: %v", err)
			return
		}
		require.NotNil(t, rc)
		called := false
		err = rc.Control(func(uintptr) { called = true })
		require.False(t, called)
		require.Error(t, err)
		require.ErrorIs(t, err, os.ErrClosed, "SyscallConn after Close returned nil error, and its Control returned %q (%T), which does not wrap os.ErrClosed", err, err)
	})
}

// A RawConn taken before Close must not hand out the (possibly reused)
// descriptor number afterwards.
func TestSyscallConnTakenBeforeClose(t *testing.T) {
	m, err := memfd.Create("rawconn-before")
	require.NoError(t, err)
	rc, err := m.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, m.Close())
	called := false
	err = rc.Control(func(uintptr) { called = true })
	require.Error(t, err)
	require.False(t, called)
}

func TestCloseConcurrentWithIO(t *testing.T) {
	for round := 0; round < 20; round++ {
		m, err := memfd.Create(fmt.Sprintf("race-%d", round))
		require.NoError(t, err)
		_, err = m.WriteAt(make([]byte, 4096), 0)
		require.NoError(t, err)

		var (
			start  = make(chan struct{})
			wg     sync.WaitGroup
			closed atomic.Bool
			bad    = make(chan error, 64)
			report = func(err error) {
				select {
				case bad <- err:
				default:
				}
			}
			workers = 8
		)
		// check classifies an error seen by a worker.
		check := func(op string, err error) bool {
			if err == nil || err == io.EOF {
				return true
			}
			if errors.Is(err, os.ErrClosed) {
				return false // stop this worker
			}
			report(fmt.Errorf("%s (closed=%v): %w", op, closed.Load(), err))
			return false
		}
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				<-start
				buf := make([]byte, 64)
				for i := 0; ; i++ {
					var ok bool
					switch (i + w) % 7 {
					case 0:
						_, err := m.ReadAt(buf, int64(i%4096))
						ok = check("ReadAt", err)
					case 1:
						_, err := m.WriteAt(buf, int64(i%4000))
						ok = check("WriteAt", err)
					case 2:
						_, err := m.Size()
						ok = check("Size", err)
					case 3:
						_, err := m.Seals()
						ok = check("Seals", err)
					case 4:
						ok = check("AddSeals", m.AddSeals(0))
					case 5:
						ok = check("Control", m.Control(func(int) error { return nil }))
					case 6:
						r, err := m.ReopenReadOnly()
						if err == nil {
							_ = r.Close()
						}
						ok = check("ReopenReadOnly", err)
					}
					if !ok {
						// After the first ErrClosed, everything else must be ErrClosed too.
						_, err := m.Size()
						if !errors.Is(err, os.ErrClosed) {
							report(fmt.Errorf("Size after close seen: %v", err))
						}
						_, err = m.ReadAt(buf, 0)
						if !errors.Is(err, os.ErrClosed) {
							report(fmt.Errorf("ReadAt after close seen: %v", err))
						}
						return
					}
				}
			}(w)
		}
		closeErrs := make(chan error, 3)
		for c := 0; c < 3; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < 50*c; i++ {
					_, _ = m.Size()
				}
				err := m.Close()
				closed.Store(true)
				closeErrs <- err
			}()
		}
		close(start)
		wg.Wait()
		close(bad)
		close(closeErrs)
		for err := range bad {
			t.Errorf("round %d: %v", round, err)
		}
		nilCloses := 0
		for err := range closeErrs {
			if err == nil {
				nilCloses++
			} else {
				require.ErrorIs(t, err, os.ErrClosed)
			}
		}
		require.Equal(t, 1, nilCloses, "exactly one Close succeeds")
		require.Equal(t, fmt.Sprintf("race-%d", round), m.Name())
		if t.Failed() {
			return
		}
	}
}
