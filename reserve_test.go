//go:build linux

package sealbuf_test

import (
	"context"
	"errors"
	"math"
	"os"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
	"github.com/sealbuf/sealbuf/sealtest"
)

// resident counts the pages of mem that mincore(2) reports in memory: for
// a memfd mapping, the pages the file has allocated.
func resident(t *testing.T, mem []byte) int {
	t.Helper()
	ps := os.Getpagesize()
	vec := make([]byte, (len(mem)+ps-1)/ps)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(mem))), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0])))
	require.Zero(t, errno, "mincore: %v", errno)
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// allocatedMemfds counts this process's memfds named name whose blocks
// cover size bytes.
func allocatedMemfds(t *testing.T, name string, size int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, e := range ents {
		p := "/proc/self/fd/" + e.Name()
		var st unix.Stat_t
		if link, err := os.Readlink(p); err != nil || link != "/memfd:"+name+" (deleted)" || unix.Stat(p, &st) != nil {
			continue
		}
		if st.Blocks*512 >= int64(size) {
			n++
		}
	}
	return n
}

// waitReady waits until r has n Buffers ready.
func waitReady(t *testing.T, r *sealbuf.Reserve, n int) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); r.Ready() < n; {
		if time.Now().After(end) {
			t.Fatalf("Ready is %d after 10 s, want %d", r.Ready(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReserveBuffersArePopulated: what Take returns has every page in
// memory already (the control, a memfd only sized and mapped, has none),
// is zero-filled, writable, and seals and opens like any Buffer.
func TestReserveBuffersArePopulated(t *testing.T) {
	const size = 1<<20 + 123
	pages := (size + os.Getpagesize() - 1) / os.Getpagesize()

	control, err := memfd.Create("control")
	require.NoError(t, err)
	defer control.Close()
	require.NoError(t, control.Truncate(size))
	require.NoError(t, control.Control(func(fd int) error {
		mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		require.NoError(t, err)
		defer unix.Munmap(mem)
		require.Zero(t, resident(t, mem), "a memfd only sized and mapped has no pages yet (the control)")
		return nil
	}))
	// New populates its pages at once too (MADV_POPULATE_WRITE).
	plain, err := sealbuf.New(size)
	require.NoError(t, err)
	require.Equal(t, pages, resident(t, plain.Bytes()), "New allocates every page at once")
	require.NoError(t, plain.Close())

	r, err := sealbuf.NewReserve(size, 3, sealbuf.WithName("reserve-probe"))
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, size, r.Size())
	waitReady(t, r, 3)

	// The ready memfds, before anyone maps or writes them, have their
	// blocks. (The goroutine may be making one more: it can be partial.)
	require.GreaterOrEqual(t, allocatedMemfds(t, "reserve-probe", size), 3, "every ready memfd has its pages allocated (fallocate)")

	for i := range 5 {
		b, err := r.Take(context.Background())
		require.NoError(t, err)
		require.Equal(t, size, b.Len())
		mem := b.Bytes()
		require.Equal(t, pages, resident(t, mem), "buffer %d: every page populated", i)
		for j, c := range mem {
			if c != 0 {
				t.Fatalf("buffer %d: byte %d is %#x, want 0", i, j, c)
			}
		}
		for j := range mem {
			mem[j] = byte(i + j)
		}
		s, err := b.Seal()
		require.NoError(t, err)
		require.True(t, s.Seals().Has(memfd.SealImmutable), "%s", s.Seals())
		require.Equal(t, size, s.Len())
		require.Equal(t, byte(i+size-1), s.Bytes()[size-1])
		require.NoError(t, s.Close())
	}
}

// TestReserveFromBytes: sealed copies of exactly len(b) bytes, up to Size;
// longer fails with ErrTooLarge and consumes nothing.
func TestReserveFromBytes(t *testing.T) {
	defer sealtest.CheckLeaks(t)()
	const size = 256<<10 + 5
	r, err := sealbuf.NewReserve(size, 2, sealbuf.WithName("reserved"))
	require.NoError(t, err)
	defer r.Close()
	for _, n := range []int{size, size - 1, 4096, 1, 0} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 3)
		}
		s, err := r.FromBytes(context.Background(), b)
		require.NoError(t, err, "%d bytes", n)
		require.Equal(t, n, s.Len())
		require.True(t, s.Seals().Has(memfd.SealImmutable|memfd.SealSeal), "%s", s.Seals())
		require.Equal(t, "reserved", s.File().Name())
		size, err := s.File().Size()
		require.NoError(t, err)
		require.EqualValues(t, n, size, "the memfd is cut to len(b)")
		require.Equal(t, b, s.Bytes()[:n:n])
		require.NoError(t, s.Close())
	}
	waitReady(t, r, 2)
	_, err = r.FromBytes(context.Background(), make([]byte, size+1))
	require.ErrorIs(t, err, sealbuf.ErrTooLarge)
	require.Equal(t, 2, r.Ready(), "a refused call takes nothing")
}

func TestReserveArguments(t *testing.T) {
	_, err := sealbuf.NewReserve(4096, 0)
	require.Error(t, err, "depth 0")
	_, err = sealbuf.NewReserve(-1, 1)
	require.Error(t, err, "negative size")
	_, err = sealbuf.NewReserve(math.MaxInt>>1+1, 1)
	require.ErrorIs(t, err, sealbuf.ErrTooLarge)

	_, err = sealbuf.NewReserve(4096, 1, sealbuf.WithHugePages(0))
	require.ErrorContains(t, err, "huge pages")

	r, err := sealbuf.NewReserve(0, 1)
	require.NoError(t, err, "size 0 is a valid (empty) Buffer")
	b, err := r.Take(context.Background())
	require.NoError(t, err)
	require.Empty(t, b.Bytes())
	require.NoError(t, b.Close())
	s, err := r.FromBytes(context.Background(), nil)
	require.NoError(t, err)
	require.Zero(t, s.Len())
	require.NoError(t, s.Close())
	require.NoError(t, r.Close())
}

// TestReserveCloseAndContext: a done context fails at once, Take after
// Close fails with os.ErrClosed, a second Close too, and Takes racing
// Close get a Buffer or os.ErrClosed — with nothing leaked.
func TestReserveCloseAndContext(t *testing.T) {
	defer sealtest.CheckLeaks(t)()
	r, err := sealbuf.NewReserve(64<<10, 2)
	require.NoError(t, err)
	waitReady(t, r, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = r.Take(ctx)
	require.ErrorIs(t, err, context.Canceled, "a done context fails even with Buffers ready")

	var wg sync.WaitGroup
	var mu sync.Mutex
	var taken []*sealbuf.Buffer
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				b, err := r.Take(context.Background())
				if err != nil {
					if !errors.Is(err, os.ErrClosed) {
						t.Errorf("Take: %v, want a Buffer or os.ErrClosed", err)
					}
					return
				}
				mu.Lock()
				taken = append(taken, b)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, r.Close())
	wg.Wait()
	_, err = r.Take(context.Background())
	require.ErrorIs(t, err, os.ErrClosed)
	require.ErrorIs(t, r.Close(), os.ErrClosed)
	require.NotEmpty(t, taken)
	for _, b := range taken {
		require.NoError(t, b.Close())
	}
}

// TestReserveWaitsForContext: with every ready Buffer taken and the
// goroutine busy making 64 MiB ones, Take ends with the context.
func TestReserveWaitsForContext(t *testing.T) {
	r, err := sealbuf.NewReserve(64<<20, 1)
	require.NoError(t, err)
	defer r.Close()
	b, err := r.Take(context.Background())
	require.NoError(t, err)
	require.NoError(t, b.Close())
	ctx, cancel := context.WithTimeout(context.Background(), time.Microsecond)
	defer cancel()
	b, err = r.Take(ctx)
	if err == nil { // the next one was ready already: the machine is fast
		require.NoError(t, b.Close())
		t.Skip("the reserve refilled before the context ended")
	}
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// TestReserveRecoversFromFailure: while the goroutine cannot make memfds
// (no descriptors left) and nothing is ready, Take reports its error at
// once instead of waiting; once descriptors are back it refills, and no
// stale error is handed out after that.
func TestReserveRecoversFromFailure(t *testing.T) {
	ctx := context.Background()
	r, err := sealbuf.NewReserve(4096, 4)
	require.NoError(t, err)
	defer r.Close()
	waitReady(t, r, 4)
	var held []*sealbuf.Buffer
	for range 4 {
		b, err := r.Take(ctx)
		require.NoError(t, err)
		held = append(held, b)
	}

	var old unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &old))
	lim := old
	lim.Cur = 0
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim))
	restored := false
	restore := func() {
		if !restored {
			restored = true
			require.NoError(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &old))
		}
	}
	defer restore()
	time.Sleep(100 * time.Millisecond) // several failed attempts, 10 ms apart
	var takeErr error
	for end := time.Now().Add(10 * time.Second); takeErr == nil && time.Now().Before(end); {
		var b *sealbuf.Buffer
		b, takeErr = r.Take(ctx) // the refill may have won one before the limit
		if b != nil {
			held = append(held, b)
		}
	}
	restore()
	require.ErrorIs(t, takeErr, unix.EMFILE, "Take reports the goroutine's failure")

	for _, b := range held {
		require.NoError(t, b.Close())
	}
	waitReady(t, r, 4)
	for i := range 8 {
		b, err := r.Take(ctx)
		require.NoError(t, err, "Take %d after recovery", i)
		require.NoError(t, b.Close())
	}
}
