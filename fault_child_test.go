//go:build linux

package sealbuf_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
)

// patternByte fills the files of the flapping tests. Their peer grows the
// file back with pwrite, which makes each page exist only once it holds
// patternByte: a zero byte read back is never data.
const patternByte = 0xa5

type hammerResult struct {
	ok, truncated atomic.Int64
}

func (r *hammerResult) String() string {
	return fmt.Sprintf("%d accesses succeeded, %d failed with ErrTruncated", r.ok.Load(), r.truncated.Load())
}

// hammer reads, writes (if m is writable) and accesses m (size bytes, all
// patternByte) from up to four goroutines until done is closed. Each access must either succeed
// with nothing but patternByte or fail with ErrTruncated.
func hammer(t *testing.T, m *sealbuf.Mapping, size int, writable bool, done <-chan struct{}) *hammerResult {
	t.Helper()
	res := new(hammerResult)
	var bad atomic.Pointer[error]
	report := func(err error) {
		bad.CompareAndSwap(nil, &err)
	}
	// check counts the outcome of an access that saw a byte other than
	// patternByte first at index bad (-1: none).
	check := func(what string, err error, bad int) bool {
		switch {
		case err == nil && bad < 0:
			res.ok.Add(1)
		case err == nil:
			report(fmt.Errorf("%s returned no error, but byte %d of what it saw is not the file's (0x%02x): the zero pages patched in after a fault were returned as data", what, bad, patternByte))
			return false
		case errors.Is(err, sealbuf.ErrTruncated):
			res.truncated.Add(1)
		default:
			report(fmt.Errorf("%s: %w", what, err))
			return false
		}
		return true
	}
	want := bytes.Repeat([]byte{patternByte}, size)
	stopped := func() bool {
		select {
		case <-done:
			return true
		default:
			return bad.Load() != nil
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { // whole reads
		buf := make([]byte, size)
		for !stopped() {
			n, err := m.ReadAt(buf, 0)
			if err != nil && n != 0 {
				report(fmt.Errorf("whole ReadAt failed with n = %d", n))
			}
			if !check("whole ReadAt", err, firstOther(buf)) {
				return
			}
		}
	})
	wg.Go(func() { // small reads all over
		buf := make([]byte, 3000)
		for i := 0; !stopped(); i++ {
			off := (i * 7919) % (size - len(buf))
			n, err := m.ReadAt(buf, int64(off))
			if err != nil && n != 0 {
				report(fmt.Errorf("ReadAt failed with n = %d", n))
			}
			if !check(fmt.Sprintf("ReadAt of %d bytes at %d", len(buf), off), err, firstOther(buf)) {
				return
			}
		}
	})
	wg.Go(func() { // Access scanning for a zero
		for !stopped() {
			bad := -1
			err := m.Access(func(b []byte) error {
				bad = firstOther(b)
				return nil
			})
			if !check("Access", err, bad) {
				return
			}
		}
	})
	wg.Go(func() { // writes of the same bytes
		for i := 0; writable && !stopped(); i++ {
			off := (i * 4099) % (size - 100)
			n, err := m.WriteAt(want[:100], int64(off))
			if err != nil && n != 0 {
				report(fmt.Errorf("WriteAt failed with n = %d", n))
			}
			if !check("WriteAt", err, -1) {
				return
			}
		}
	})
	wg.Wait()
	if p := bad.Load(); p != nil {
		t.Error(*p)
	}
	return res
}

// firstOther returns the index of the first byte of b that is not
// patternByte, or -1.
func firstOther(b []byte) int {
	for i, c := range b {
		if c != patternByte {
			return i
		}
	}
	return -1
}

// requireAllPattern checks, once the peer is done and the file is whole
// again, that the Mapping reads it all.
func requireAllPattern(t *testing.T, m *sealbuf.Mapping, size int) {
	t.Helper()
	buf := make([]byte, size)
	n, err := m.ReadAt(buf, 0)
	require.NoError(t, err, "the file is whole again")
	require.Equal(t, size, n)
	for i, c := range buf {
		require.Equal(t, byte(patternByte), c, "byte %d", i)
	}
	require.NoError(t, m.Access(func(b []byte) error {
		if !bytes.Equal(b, buf) {
			return errors.New("Access sees other bytes than ReadAt")
		}
		return nil
	}))
}

// TestMapChildProcessFlaps has another process cut the file to one page and
// grow it back with pwrite, over and over, while this process reads and
// writes the Mapping from four goroutines.
func TestMapChildProcessFlaps(t *testing.T) {
	for _, flag := range []int{os.O_RDWR, os.O_RDONLY} {
		name := "O_RDWR"
		if flag == os.O_RDONLY {
			name = "O_RDONLY"
		}
		t.Run(name, func(t *testing.T) {
			const size = 256 << 10
			f := newTestMemfd(t, 0, 0)
			_, err := f.WriteAt(bytes.Repeat([]byte{patternByte}, size), 0)
			require.NoError(t, err)
			m, err := sealbuf.Map(procOpen(t, f, flag))
			require.NoError(t, err)
			defer func() { require.NoError(t, m.Close()) }()

			cmd, dup, err := peerCmd(f, "flap", fmt.Sprintf("%d:%d:%d:%d", size, page, 1000, patternByte))
			require.NoError(t, err)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			require.NoError(t, dup.Close())
			done := make(chan struct{})
			var waitErr error
			go func() {
				waitErr = cmd.Wait()
				close(done)
			}()
			res := hammer(t, m, size, flag == os.O_RDWR, done)
			<-done
			require.NoError(t, waitErr, "peer: %s", out.String())
			t.Log(res)
			require.NotZero(t, res.truncated.Load(), "no access saw the peer's truncation")
			requireAllPattern(t, m, size)
		})
	}
}

// TestMapChildTruncatesWhileBlocked: the child cuts the file while an Access
// sits in fn with the window in hand; fn then reads past the cut.
func TestMapChildTruncatesWhileBlocked(t *testing.T) {
	m, f := newMapping(t, truncLen, 0, os.O_RDWR)
	inside, release := make(chan struct{}), make(chan struct{})
	result := make(chan error, 1)
	go func() {
		result <- m.Access(func(b []byte) error {
			close(inside)
			<-release
			sinkSum = sha256.Sum256(b)
			return nil
		})
	}()
	<-inside
	require.NoError(t, runPeer(f, "truncate", "4096"))
	close(release)
	requireTruncated(t, <-result)
	// And the Mapping is still usable below the new end.
	buf := make([]byte, 4096)
	_, err := m.ReadAt(buf, 0)
	require.NoError(t, err)
	require.Equal(t, patternBytes(4096), buf)
	// Done with it: Close works after faults.
	require.NoError(t, m.Close())
	requireClosed(t, m.Close())
}

// TestMapPeerExits: the peer hands the memfd over and exits;
// the Mapping keeps working (the memfd lives on with our descriptor).
func TestMapPeerExits(t *testing.T) {
	m, f := newMapping(t, 8192, 0, os.O_RDWR)
	require.NoError(t, runPeer(f, "grow-write", "8192:0:hello"))
	require.NoError(t, f.Close())
	buf := make([]byte, 5)
	_, err := m.ReadAt(buf, 0)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf))
	_, err = m.WriteAt([]byte("world"), 8187)
	require.NoError(t, err)
	require.NoError(t, m.Access(func(b []byte) error {
		if string(b[8187:]) != "world" {
			return errors.New("lost a write")
		}
		return nil
	}))
}
