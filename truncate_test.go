//go:build linux

package sealbuf_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf"
	"github.com/sealbuf/sealbuf/memfd"
)

// truncLen is the size of the mappings the truncation tests cut to one page.
const truncLen = 1 << 20

// A peer resizes and writes the memfd behind the Mapping's back: this
// process through its own handle, or another process that got the memfd as
// an inherited descriptor, the way a hostile producer would.
type peer struct {
	name      string
	truncate  func(f *memfd.File, size int64) error
	growWrite func(f *memfd.File, size, off int64, data string) error
}

var peers = []peer{
	{
		name:     "same-process",
		truncate: func(f *memfd.File, size int64) error { return f.Truncate(size) },
		growWrite: func(f *memfd.File, size, off int64, data string) error {
			if err := f.Truncate(size); err != nil {
				return err
			}
			_, err := f.WriteAt([]byte(data), off)
			return err
		},
	},
	{
		name: "child-process",
		truncate: func(f *memfd.File, size int64) error {
			return runPeer(f, "truncate", strconv.FormatInt(size, 10))
		},
		growWrite: func(f *memfd.File, size, off int64, data string) error {
			return runPeer(f, "grow-write", fmt.Sprintf("%d:%d:%s", size, off, data))
		},
	},
}

// An accessKind touches the window b past its first page; ref holds what b
// held before the cut. Kinds that store need a writable Mapping.
type accessKind struct {
	name  string
	store bool
	fn    func(b, ref []byte)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// accessKinds are the ways user code reads and writes a window: the
// runtime's memmove and memclr, compiled loads and stores, and the assembly
// of bytes, crc32, sha256 and string conversion. truncate_atomic_test.go
// adds sync/atomic where the race detector is off.
var accessKinds = []accessKind{
	{"copy", false, func(b, _ []byte) { dst := make([]byte, len(b)); copy(dst, b) }},
	{"copy-unaligned", false, func(b, _ []byte) { dst := make([]byte, len(b)); copy(dst[1:], b[3:]) }},
	{"copy-tail", false, func(b, _ []byte) { dst := make([]byte, 100); copy(dst, b[len(b)-100:]) }},
	{"index-reads", false, func(b, _ []byte) {
		var s byte
		for i := 0; i < len(b); i += 512 {
			s += b[i]
		}
		sinkByte = s
	}},
	{"last-byte", false, func(b, _ []byte) { sinkByte = b[len(b)-1] }},
	{"stores", true, func(b, _ []byte) {
		for i := page; i < len(b); i += 512 {
			b[i] = 1
		}
	}},
	{"last-byte-store", true, func(b, _ []byte) { b[len(b)-1] = 1 }},
	{"clear", true, func(b, _ []byte) { clear(b[page:]) }},
	{"copy-into", true, func(b, _ []byte) { copy(b[page:], make([]byte, len(b)-page)) }},
	{"bytes.Equal", false, func(b, ref []byte) { sinkBool = bytes.Equal(b, ref) }},
	{"bytes.Compare", false, func(b, ref []byte) { sinkInt = bytes.Compare(b, ref) }},
	{"bytes.IndexByte", false, func(b, _ []byte) { sinkInt = bytes.IndexByte(b, 0xff) }},
	{"bytes.Index", false, func(b, _ []byte) { sinkInt = bytes.Index(b, []byte{0xff, 0xfe, 0xfd}) }},
	{"bytes.Count", false, func(b, _ []byte) { sinkInt = bytes.Count(b, []byte{0xff}) }},
	{"bytes.Contains", false, func(b, _ []byte) { sinkBool = bytes.Contains(b, []byte("\xff\xff")) }},
	{"crc32-IEEE", false, func(b, _ []byte) { sinkUint32 = crc32.ChecksumIEEE(b) }},
	{"crc32-Castagnoli", false, func(b, _ []byte) { sinkUint32 = crc32.Checksum(b, castagnoli) }},
	{"sha256", false, func(b, _ []byte) { sinkSum = sha256.Sum256(b) }},
	{"string", false, func(b, _ []byte) { sinkString = string(b) }},
	{"binary.LittleEndian.Uint64", false, func(b, _ []byte) { sinkUint64 = binary.LittleEndian.Uint64(b[page+8:]) }},
	{"binary.LittleEndian.Uint64-straddle", false, func(b, _ []byte) { sinkUint64 = binary.LittleEndian.Uint64(b[page-4:]) }},
	{"binary.LittleEndian.PutUint64", true, func(b, _ []byte) { binary.LittleEndian.PutUint64(b[page+16:], 7) }},
}

// TestMapTruncatedDuringAccess cuts the file to one page from inside fn,
// then runs the access: Access returns ErrTruncated and the process lives.
// Later accesses keep failing instead of crashing, accesses below the new
// end work, and once the peer grows the file back its new bytes are seen.
func TestMapTruncatedDuringAccess(t *testing.T) {
	for _, p := range peers {
		t.Run(p.name, func(t *testing.T) {
			for _, k := range accessKinds {
				t.Run(k.name, func(t *testing.T) {
					testTruncatedDuringAccess(t, p, k)
				})
			}
		})
	}
}

func testTruncatedDuringAccess(t *testing.T, p peer, k accessKind) {
	m, f := newMapping(t, truncLen, 0, os.O_RDWR)
	ref := patternBytes(truncLen)
	run := func(b []byte) error { k.fn(b, ref); return nil }
	if !k.store {
		require.NoError(t, m.Access(run), "before the cut")
	}

	err := m.Access(func(b []byte) error {
		if err := p.truncate(f, int64(page)); err != nil {
			return err
		}
		k.fn(b, ref)
		return nil
	})
	requireTruncated(t, err, "the access during the cut")
	t.Log(err)

	// Later accesses fail too, instead of crashing.
	for range 2 {
		requireTruncated(t, m.Access(run), "a later Access")
		buf := make([]byte, truncLen)
		n, err := m.ReadAt(buf, 0)
		requireTruncated(t, err, "a later ReadAt")
		require.Zero(t, n)
		n, err = m.ReadAt(buf[:10], int64(page))
		requireTruncated(t, err, "a later ReadAt just past the new end")
		require.Zero(t, n)
		n, err = m.ReadAt(buf[:100], truncLen-50)
		requireTruncated(t, err, "a later ReadAt crossing Len is not io.EOF")
		require.Zero(t, n)
		n, err = m.WriteAt([]byte("x"), truncLen-1)
		requireTruncated(t, err, "a later WriteAt")
		require.Zero(t, n)
	}

	// Wholly below the new end: fine.
	buf := make([]byte, page)
	n, err := m.ReadAt(buf, 0)
	require.NoError(t, err)
	require.Equal(t, page, n)
	require.Equal(t, ref[:page], buf)
	n, err = m.WriteAt([]byte("below"), 10)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	got := make([]byte, 5)
	_, err = f.ReadAt(got, 10)
	require.NoError(t, err)
	require.Equal(t, "below", string(got))

	// The peer grows the file back and writes: the Mapping sees it all.
	require.NoError(t, p.growWrite(f, truncLen, 500000, "peer-was-here"))
	n, err = m.ReadAt(got[:0], 0)
	require.NoError(t, err)
	require.Zero(t, n)
	peerBytes := make([]byte, 13)
	_, err = m.ReadAt(peerBytes, 500000)
	require.NoError(t, err, "after the file grew back")
	require.Equal(t, "peer-was-here", string(peerBytes))
	require.NoError(t, m.Access(func(b []byte) error {
		if string(b[500000:500013]) != "peer-was-here" {
			return fmt.Errorf("Access sees %q, not the peer's bytes", b[500000:500013])
		}
		return nil
	}))
	require.NoError(t, m.Access(run), "the same access after the file grew back")

	all := make([]byte, truncLen)
	n, err = m.ReadAt(all, 0)
	require.NoError(t, err)
	require.Equal(t, truncLen, n)
	want := make([]byte, truncLen)
	copy(want, ref[:page])
	copy(want[10:], "below")
	copy(want[500000:], "peer-was-here")
	if k.store {
		// The store kinds may have run again above.
		_, err = f.ReadAt(want[page:], int64(page))
		require.NoError(t, err)
	}
	require.True(t, bytes.Equal(want, all), "the whole file after it grew back")

	// Writes reach the file again, and the peer's later writes are seen.
	_, err = m.WriteAt([]byte("after"), 600000)
	require.NoError(t, err)
	_, err = f.ReadAt(got, 600000)
	require.NoError(t, err)
	require.Equal(t, "after", string(got), "a WriteAt after the file grew back reaches the memfd")
	_, err = f.WriteAt([]byte("later"), 700000)
	require.NoError(t, err)
	_, err = m.ReadAt(got, 700000)
	require.NoError(t, err)
	require.Equal(t, "later", string(got))
}

// TestMapTruncatedBeforeAccess: the first access after the cut (no earlier
// fault) fails, for ReadAt, WriteAt and Access.
func TestMapTruncatedBeforeAccess(t *testing.T) {
	for _, p := range peers {
		t.Run(p.name, func(t *testing.T) {
			fresh := func(t *testing.T) (*sealbuf.Mapping, *memfd.File) {
				m, f := newMapping(t, truncLen, 0, os.O_RDWR)
				require.NoError(t, m.Access(func(b []byte) error { sinkSum = sha256.Sum256(b); return nil }))
				require.NoError(t, p.truncate(f, int64(page)))
				return m, f
			}
			t.Run("ReadAt", func(t *testing.T) {
				m, _ := fresh(t)
				buf := make([]byte, truncLen)
				n, err := m.ReadAt(buf, 0)
				requireTruncated(t, err)
				require.Zero(t, n)
			})
			t.Run("ReadAt-crossing-Len", func(t *testing.T) {
				m, _ := fresh(t)
				n, err := m.ReadAt(make([]byte, 200), truncLen-100)
				requireTruncated(t, err)
				require.NotErrorIs(t, err, io.EOF)
				require.Zero(t, n)
			})
			t.Run("WriteAt", func(t *testing.T) {
				m, f := fresh(t)
				n, err := m.WriteAt(bytes.Repeat([]byte{9}, 3*page), int64(page)/2)
				requireTruncated(t, err)
				require.Zero(t, n)
				size, err := f.Size()
				require.NoError(t, err)
				require.Equal(t, int64(page), size, "WriteAt never grows the file")
				// io.WriterAt: n is the number of bytes written.
				head := make([]byte, page/2)
				_, err = f.ReadAt(head, int64(page)/2)
				require.NoError(t, err)
				assert.Equal(t, patternBytes(page)[page/2:], head, "WriteAt returned n = 0, yet changed bytes below the file's end")
			})
			t.Run("Access", func(t *testing.T) {
				m, _ := fresh(t)
				requireTruncated(t, m.Access(func(b []byte) error { sinkSum = sha256.Sum256(b); return nil }))
			})
			t.Run("Access-to-zero", func(t *testing.T) {
				m, f := fresh(t)
				require.NoError(t, p.truncate(f, 0))
				requireTruncated(t, m.Access(func(b []byte) error { sinkByte = b[0]; return nil }))
				n, err := m.ReadAt(make([]byte, 1), 0)
				requireTruncated(t, err)
				require.Zero(t, n)
			})
		})
	}
}

// TestMapSubPageTruncation cuts the file inside a page, where the kernel
// keeps the page and reading past the end gives zeros without a fault: the
// Mapping must still report ErrTruncated, never zeros or a short count.
func TestMapSubPageTruncation(t *testing.T) {
	for _, p := range peers {
		for _, size := range []int64{8192, truncLen, 5000} {
			t.Run(fmt.Sprintf("%s/%d", p.name, size), func(t *testing.T) {
				m, f := newMapping(t, size, 0, os.O_RDWR)
				ref := patternBytes(int(size))
				require.NoError(t, p.truncate(f, 4000))

				buf := make([]byte, 100)
				n, err := m.ReadAt(buf, 3950)
				requireTruncated(t, err, "ReadAt [3950, 4050)")
				require.Zero(t, n, "never a short count")
				n, err = m.ReadAt(buf[:1], 4000)
				requireTruncated(t, err, "ReadAt [4000, 4001)")
				require.Zero(t, n)
				requireTruncated(t, m.Access(func(b []byte) error {
					copy(buf, b[3950:4050])
					return nil
				}), "Access reading [3950, 4050)")

				n, err = m.ReadAt(buf[:50], 3950)
				require.NoError(t, err, "ReadAt [3950, 4000) is below the new end")
				require.Equal(t, 50, n)
				require.Equal(t, ref[3950:4000], buf[:50])
				all := make([]byte, 4000)
				n, err = m.ReadAt(all, 0)
				require.NoError(t, err)
				require.Equal(t, 4000, n)
				require.Equal(t, ref[:4000], all)

				n, err = m.WriteAt(make([]byte, 20), 3990)
				requireTruncated(t, err, "WriteAt [3990, 4010)")
				require.Zero(t, n)
				got, err := f.Size()
				require.NoError(t, err)
				require.Equal(t, int64(4000), got, "a refused WriteAt does not grow the file")
				// io.WriterAt: n is the number of bytes written.
				head := make([]byte, 10)
				_, err = f.ReadAt(head, 3990)
				require.NoError(t, err)
				assert.Equal(t, ref[3990:4000], head, "WriteAt returned n = 0, yet changed bytes [3990, 4000) of the file")

				// Grown back: readable, and the cut part is zeros now.
				require.NoError(t, p.growWrite(f, size, 4000, "X"))
				n, err = m.ReadAt(buf, 3950)
				require.NoError(t, err)
				require.Equal(t, 100, n)
				want := make([]byte, 100)
				_, err = f.ReadAt(want[:50], 3950)
				require.NoError(t, err)
				want[50] = 'X'
				require.Equal(t, want, buf)
			})
		}
	}
}

// TestMapFaultFailsRunningAccesses: one goroutine is inside Access (blocked
// in fn) while another's ReadAt faults; both report ErrTruncated, also when
// the file has grown back before the first one finishes.
func TestMapFaultFailsRunningAccesses(t *testing.T) {
	for _, p := range peers {
		for _, growBack := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/grow-back=%v", p.name, growBack), func(t *testing.T) {
				m, f := newMapping(t, truncLen, 0, os.O_RDWR)
				inside, release := make(chan struct{}), make(chan struct{})
				blocked := make(chan error, 1)
				go func() {
					blocked <- m.Access(func(b []byte) error {
						close(inside)
						<-release
						sinkByte = b[0] // below the cut
						return nil
					})
				}()
				<-inside
				require.NoError(t, p.truncate(f, int64(page)))
				n, err := m.ReadAt(make([]byte, truncLen), 0)
				requireTruncated(t, err, "the faulting ReadAt")
				require.Zero(t, n)
				if growBack {
					require.NoError(t, p.growWrite(f, truncLen, 0, "A"))
				}
				close(release)
				requireTruncated(t, <-blocked, "the Access running when another one faulted")

				if growBack {
					// A new access after all that sees the file as it is.
					buf := make([]byte, truncLen)
					n, err = m.ReadAt(buf, 0)
					require.NoError(t, err)
					require.Equal(t, truncLen, n)
					require.Equal(t, byte('A'), buf[0])
					require.Equal(t, patternBytes(page)[1:], buf[1:page])
					require.Equal(t, make([]byte, truncLen-page), buf[page:])
				}
			})
		}
	}
}

// TestMapTruncateConcurrently hammers a Mapping from several goroutines
// while another goroutine of this process cuts the file and grows it back
// with pwrite (so each page holds patternByte before it exists again).
// Every access either succeeds with the real bytes or fails with
// ErrTruncated: the process never crashes, and no access returns the zero
// pages the Mapping patches in after a fault as if they were data.
func TestMapTruncateConcurrently(t *testing.T) {
	for _, flag := range []int{os.O_RDWR, os.O_RDONLY} {
		name := "O_RDWR"
		if flag == os.O_RDONLY {
			name = "O_RDONLY"
		}
		t.Run(name, func(t *testing.T) {
			const size = 256 << 10
			f := newTestMemfd(t, 0, 0)
			fill := bytes.Repeat([]byte{patternByte}, size)
			_, err := f.WriteAt(fill, 0)
			require.NoError(t, err)
			m, err := sealbuf.Map(procOpen(t, f, flag))
			require.NoError(t, err)
			defer m.Close()

			stop := make(chan struct{})
			flapped := make(chan error, 1)
			go func() {
				var err error
				for err == nil {
					select {
					case <-stop:
						flapped <- nil
						return
					default:
					}
					if err = f.Truncate(int64(page)); err == nil {
						_, err = f.WriteAt(fill[page:], int64(page))
					}
				}
				flapped <- err
			}()
			done := make(chan struct{})
			time.AfterFunc(time.Second, func() { close(done) })
			res := hammer(t, m, size, flag == os.O_RDWR, done)
			close(stop)
			require.NoError(t, <-flapped)
			t.Log(res)
			require.NotZero(t, res.truncated.Load(), "no access ever saw the truncation")
			requireAllPattern(t, m, size)
		})
	}
}
