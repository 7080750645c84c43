//go:build linux

package sealbuf

import (
	"os"
	"strings"
	"testing"

	"unsafe"

	"github.com/stretchr/testify/require"
)

func TestParseSmapsHuge(t *testing.T) {
	const smaps = `7f0000000000-7f0000400000 rw-s 00000000 00:01 42                         /memfd:sealbuf (deleted)
Size:               4096 kB
ShmemPmdMapped:     2048 kB
FilePmdMapped:         0 kB
VmFlags: rd wr sh mr mw me ms hg
7f0000400000-7f0000600000 rw-s 00000000 00:01 43                         /memfd:other (deleted)
Size:               2048 kB
ShmemPmdMapped:     2048 kB
`
	n, err := parseSmapsHuge(strings.NewReader(smaps), 0x7f0000000000)
	require.NoError(t, err)
	require.EqualValues(t, 2<<20, n)
	n, err = parseSmapsHuge(strings.NewReader(smaps), 0x7f0000400000)
	require.NoError(t, err)
	require.EqualValues(t, 2<<20, n)
	_, err = parseSmapsHuge(strings.NewReader(smaps), 0x7f0000200000)
	require.Error(t, err)
}

// hugeMapped sees no huge pages in a mapping of normal pages, and the
// smaps fallback agrees with PAGEMAP_SCAN.
func TestHugeMappedNormalPages(t *testing.T) {
	file, mem, err := newMapped("thp-test", 4<<20, false)
	require.NoError(t, err)
	defer file.Close()
	defer unmap(mem)
	n, err := hugeMapped(mem)
	require.NoError(t, err)
	if thp := sysfsChoice(thpShmemEnabled); thp == "never" || thp == "" {
		require.Zero(t, n)
	}
	m, err := smapsHuge(uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem)))))
	require.NoError(t, err)
	require.Equal(t, n, m)
}

func TestSysfsChoice(t *testing.T) {
	require.Equal(t, "", sysfsChoice("/nonexistent"))
	require.Contains(t, []string{"always", "within_size", "advise", "never", "deny", "force", ""}, sysfsChoice(thpShmemEnabled))
}

// On a mapping that got transparent huge pages, PAGEMAP_SCAN and the smaps
// fallback agree.
func TestHugeMappedTransparent(t *testing.T) {
	if sysfsChoice(thpShmemEnabled) == "" || thpPMDSize() != 2<<20 {
		t.Skip("no 2 MiB shmem transparent huge pages")
	}
	old := sysfsChoice(thpShmemEnabled)
	if old != "advise" {
		if err := os.WriteFile(thpShmemEnabled, []byte("advise"), 0); err != nil {
			t.Skipf("cannot set %s: %v", thpShmemEnabled, err)
		}
		t.Cleanup(func() { os.WriteFile(thpShmemEnabled, []byte(old), 0) })
	}
	file, mem, why, err := newTransparent("thp-test", 4<<20+4096, 0)
	require.NoError(t, err)
	if file == nil {
		t.Skipf("no transparent huge pages: %v", why)
	}
	defer file.Close()
	defer unmap(mem)
	n, err := hugeMapped(mem)
	require.NoError(t, err)
	m, err := smapsHuge(uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem)))))
	require.NoError(t, err)
	require.Equal(t, n, m)
	if why == nil {
		require.EqualValues(t, 4<<20, n)
	}
}
