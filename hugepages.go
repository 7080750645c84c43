//go:build linux

package sealbuf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/sealbuf/sealbuf/memfd"
	"golang.org/x/sys/unix"
)

// defaultHugePageSize reads the kernel's default huge page size from
// /proc/meminfo once; 0 when it has none.
var defaultHugePageSize = sync.OnceValue(func() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Hugepagesize:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
})

// newHugeBacking makes a Buffer backing of huge pages: from the hugetlbfs
// pool (unless thpOnly), else shmem transparent huge pages. When neither
// can be had it returns why; file and mem are then either nil or a
// populated backing of normal pages (what the attempt at transparent huge
// pages got), usable as the fallback. err is a failure to make any
// backing at all.
func newHugeBacking(name string, size int, pageSize int64, thpOnly bool) (file *memfd.File, mem []byte, why, err error) {
	var tlbWhy error
	if !thpOnly {
		file, mem, tlbWhy = newHuge(name, size, pageSize)
		if tlbWhy == nil {
			return file, mem, nil, nil
		}
	}
	file, mem, why, err = newTransparent(name, size, pageSize)
	if err != nil || why == nil {
		return file, mem, nil, err
	}
	if tlbWhy != nil {
		why = fmt.Errorf("%w; %w", tlbWhy, why)
	}
	return file, mem, why, nil
}

// newHuge makes a huge-page Buffer backing, or says why it cannot.
func newHuge(name string, size int, pageSize int64) (*memfd.File, []byte, error) {
	ps := pageSize
	if ps == 0 {
		ps = defaultHugePageSize()
	}
	switch {
	case ps == 0:
		return nil, nil, errors.New("huge pages: the kernel reports no huge page size (no hugetlbfs support)")
	case size == 0 || int64(size)%ps != 0:
		return nil, nil, fmt.Errorf("huge pages: size %d is not a positive multiple of the %d-byte huge page size", size, ps)
	}
	file, mem, err := newMapped(name, size, false, memfd.WithHugeTLB(pageSize))
	if errors.Is(err, unix.ENOMEM) {
		err = fmt.Errorf("huge pages: the pool has too few free pages of %d bytes for %d bytes (raise /proc/sys/vm/nr_hugepages): %w", ps, size, err)
	}
	return file, mem, err
}

// The sysfs files of shmem transparent huge pages: the PMD size, the
// global policy for shmem (memfds live on the kernel's internal shmem
// mount, which follows it) and, on kernels with multi-size THP, the
// policy for PMD-sized pages alone ("inherit": the global one).
const (
	thpDir          = "/sys/kernel/mm/transparent_hugepage/"
	thpPMDSizeFile  = thpDir + "hpage_pmd_size"
	thpShmemEnabled = thpDir + "shmem_enabled"
)

// thpPMDSize is the transparent huge page size (the PMD size, 2 MiB on
// x86-64), or 0 when the kernel has no transparent huge pages.
var thpPMDSize = sync.OnceValue(func() int64 {
	b, err := os.ReadFile(thpPMDSizeFile)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
})

// sysfsChoice returns the bracketed word of a sysfs choice file
// ("always [never]" → "never"), or "" if it cannot be read.
func sysfsChoice(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(b)
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return strings.TrimSpace(s)
	}
	return s[i+1 : j]
}

// shmemTHP reports whether the kernel's policy lets a memfd mapping
// advised with MADV_HUGEPAGE have PMD-sized transparent huge pages of pmd
// bytes, and if not, why (naming the knobs and what to write to them).
// It reads the knobs each time: they may change while a program runs.
func shmemTHP(pmd int64) error {
	global := sysfsChoice(thpShmemEnabled)
	perSizeFile := fmt.Sprintf("%shugepages-%dkB/shmem_enabled", thpDir, pmd>>10)
	perSize := sysfsChoice(perSizeFile)
	switch global {
	case "":
		return fmt.Errorf("transparent huge pages: cannot read %s: no shmem huge pages in this kernel", thpShmemEnabled)
	case "deny":
		return fmt.Errorf("transparent huge pages: %s is deny", thpShmemEnabled)
	case "force":
		return nil
	}
	switch perSize {
	case "always", "within_size", "advise":
		return nil
	case "never":
		return fmt.Errorf("transparent huge pages: %s is never (as root: echo inherit > it, and advise > %s)", perSizeFile, thpShmemEnabled)
	}
	switch global {
	case "always", "within_size", "advise":
		return nil
	}
	return fmt.Errorf("transparent huge pages: %s is %s (as root: echo advise > it)", thpShmemEnabled, global)
}

// newTransparent makes a normal memfd whose mapping takes shmem
// transparent huge pages where the kernel allows them (see shmemTHP):
// every whole huge page of the buffer, the tail past the last one in
// normal pages. It returns why the buffer did not get them (nil: it did);
// in that case file and mem, if not nil, are a populated buffer of normal
// pages, usable as the fallback.
func newTransparent(name string, size int, pageSize int64) (file *memfd.File, mem []byte, why, err error) {
	pmd := thpPMDSize()
	switch {
	case pmd == 0:
		return nil, nil, errors.New("transparent huge pages: the kernel has none"), nil
	case pageSize != 0 && pageSize != pmd:
		return nil, nil, fmt.Errorf("transparent huge pages are %d bytes, not %d", pmd, pageSize), nil
	case int64(size) < pmd:
		return nil, nil, fmt.Errorf("transparent huge pages: %d bytes is less than one %d-byte page", size, pmd), nil
	}
	// The knobs are read only while the last attempt found no huge pages
	// (12 µs, a tenth of populating 2 MiB): the check after populating
	// says whether the kernel gave them, and reading the knobs first
	// spares a caller that wants huge pages or nothing (FromBytes)
	// populating normal pages it would throw away.
	if !thpWorked.Load() {
		if why := shmemTHP(pmd); why != nil {
			return nil, nil, why, nil
		}
	}
	file, mem, err = newMapped(name, size, true)
	if err != nil {
		return nil, nil, nil, err
	}
	want := int64(size) / pmd * pmd
	got, err := hugeMapped(mem)
	switch {
	case err != nil:
		why = fmt.Errorf("transparent huge pages: cannot tell whether the kernel gave them: %w", err)
	case got < want:
		if why = shmemTHP(pmd); why == nil {
			why = fmt.Errorf("transparent huge pages: the kernel mapped %d of %d bytes with them (no free %d-byte blocks?)", got, want, pmd)
		}
	}
	thpWorked.Store(why == nil)
	return file, mem, why, nil
}

// thpWorked records whether the last attempt at transparent huge pages got
// them.
var thpWorked atomic.Bool

// PAGEMAP_SCAN (Linux 6.7) on /proc/self/pagemap lists the ranges of a
// mapping by page category; x/sys/unix does not have it yet. The ioctl
// number is _IOWR('f', 16, struct pm_scan_arg), the same on every
// architecture Go supports (read|write is 0xC0000000 in both encodings).
const (
	pagemapScan = 0xC0606610
	pageIsHuge  = 1 << 6 // PAGE_IS_HUGE: mapped by a PMD (transparent) or hugetlb
)

type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages    uint64
	categoryInverted, categoryMask, categoryAnyofMask, retMask uint64
}

type pageRegion struct{ start, end, categories uint64 }

// hugeMapped returns how many bytes of mem this process maps with huge
// pages (PMD mappings): PAGEMAP_SCAN, or, on kernels without it,
// /proc/self/smaps.
func hugeMapped(mem []byte) (int64, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	base := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem))))
	start, end := base, base+uint64(len(mem))
	var regions [8]pageRegion
	var total int64
	var serr error
	err = rc.Control(func(fd uintptr) {
		for start < end {
			arg := pmScanArg{
				size: uint64(unsafe.Sizeof(pmScanArg{})), start: start, end: end,
				vec: uint64(uintptr(unsafe.Pointer(&regions[0]))), vecLen: uint64(len(regions)),
				categoryMask: pageIsHuge, retMask: pageIsHuge,
			}
			n, _, e := unix.Syscall(unix.SYS_IOCTL, fd, pagemapScan, uintptr(unsafe.Pointer(&arg)))
			runtime.KeepAlive(&regions)
			if e != 0 {
				serr = e
				return
			}
			for _, r := range regions[:n] {
				total += int64(r.end - r.start)
			}
			if arg.walkEnd <= start {
				return
			}
			start = arg.walkEnd
		}
	})
	if err == nil {
		err = serr
	}
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		return smapsHuge(base)
	}
	if err != nil {
		return 0, os.NewSyscallError("ioctl PAGEMAP_SCAN", err)
	}
	return total, nil
}

// smapsHuge returns the bytes mapped with huge pages (ShmemPmdMapped,
// FilePmdMapped) in the mapping starting at addr, from /proc/self/smaps.
func smapsHuge(addr uint64) (int64, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseSmapsHuge(f, addr)
}

func parseSmapsHuge(r io.Reader, addr uint64) (int64, error) {
	prefix := strconv.FormatUint(addr, 16) + "-"
	sc := bufio.NewScanner(r)
	in := false
	var total int64
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			if in {
				return total, nil // the next mapping
			}
			in = strings.HasPrefix(line, prefix)
			continue
		}
		if !in {
			continue
		}
		for _, key := range []string{"ShmemPmdMapped:", "FilePmdMapped:"} {
			if rest, ok := strings.CutPrefix(line, key); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err == nil {
					total += kb << 10
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !in {
		return 0, fmt.Errorf("no mapping at %#x in /proc/self/smaps", addr)
	}
	return total, nil
}
