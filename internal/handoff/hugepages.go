//go:build linux

package handoff

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

const nrHugePages = "/proc/sys/vm/nr_hugepages"

// HugePageSize returns the default huge page size (Hugepagesize in
// /proc/meminfo), or 0 when the kernel has none.
func HugePageSize() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Hugepagesize:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, _ := strconv.Atoi(f[0])
				return kb << 10
			}
		}
	}
	return 0
}

func hugeCounter(name string) (int, error) {
	size := HugePageSize()
	if size == 0 {
		return 0, fmt.Errorf("the kernel reports no huge page size")
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/kernel/mm/hugepages/hugepages-%dkB/%s", size>>10, name))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// EnsureHugePages makes sure the default-size huge page pool has at least
// pages free pages. When it has fewer and this process may write
// /proc/sys/vm/nr_hugepages (root), it raises the pool, says so on log, and
// returns a function that puts the old value back (call it on every path);
// otherwise it returns an error saying why there are not enough.
func EnsureHugePages(pages int, log io.Writer) (restore func(), err error) {
	restore = func() {}
	free, err := hugeCounter("free_hugepages")
	if err != nil {
		return restore, fmt.Errorf("huge pages: %w", err)
	}
	if free >= pages {
		return restore, nil
	}
	b, err := os.ReadFile(nrHugePages)
	if err != nil {
		return restore, fmt.Errorf("huge pages: %w", err)
	}
	old, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return restore, fmt.Errorf("huge pages: %s: %w", nrHugePages, err)
	}
	if os.Geteuid() != 0 {
		return restore, fmt.Errorf("huge pages: %d free, %d needed, and only root can raise %s (now %d)", free, pages, nrHugePages, old)
	}
	want := old + pages - free
	if err := os.WriteFile(nrHugePages, []byte(strconv.Itoa(want)), 0); err != nil {
		return restore, fmt.Errorf("huge pages: %d free, %d needed, and raising %s from %d to %d failed: %w", free, pages, nrHugePages, old, want, err)
	}
	restore = func() {
		if err := os.WriteFile(nrHugePages, []byte(strconv.Itoa(old)), 0); err != nil {
			fmt.Fprintf(log, "sealbuf bench: could not restore %s to %d: %v\n", nrHugePages, old, err)
			return
		}
		fmt.Fprintf(log, "sealbuf bench: restored %s to %d\n", nrHugePages, old)
	}
	got, _ := hugeCounter("free_hugepages")
	fmt.Fprintf(log, "sealbuf bench: raised %s from %d to %d for huge-page buffers (%d free now); it is restored afterwards\n", nrHugePages, old, want, got)
	if got < pages {
		return restore, fmt.Errorf("huge pages: raised %s to %d but only %d pages are free (%d needed): memory too fragmented or too small", nrHugePages, want, got, pages)
	}
	return restore, nil
}

const (
	thpDir          = "/sys/kernel/mm/transparent_hugepage/"
	thpShmemEnabled = thpDir + "shmem_enabled"
)

// THPSize returns the transparent huge page size (the PMD size), or 0 when
// the kernel has none.
func THPSize() int {
	b, err := os.ReadFile(thpDir + "hpage_pmd_size")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// sysfsChoice returns the bracketed word of a sysfs choice file.
func sysfsChoice(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := string(b)
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return strings.TrimSpace(s), nil
	}
	return s[i+1 : j], nil
}

// EnsureShmemTHP makes sure a memfd buffer of size bytes gets shmem
// transparent huge pages (sealbuf.WithTransparentHugePages). When it does
// not and this process may write the knobs (root), it sets
// /sys/kernel/mm/transparent_hugepage/shmem_enabled to advise (which
// affects only mappings advised with MADV_HUGEPAGE) and the PMD size's
// per-size control, if it says never, to inherit; it says so on log and
// returns a function that puts the old values back (call it on every
// path). Otherwise it returns an error saying why there are none.
func EnsureShmemTHP(size int, log io.Writer) (restore func(), err error) {
	restore = func() {}
	why := thpAvailable(size)
	if why == nil {
		return restore, nil
	}
	if os.Geteuid() != 0 {
		return restore, fmt.Errorf("%w (only root can change %s)", why, thpShmemEnabled)
	}
	perSize := fmt.Sprintf("%shugepages-%dkB/shmem_enabled", thpDir, THPSize()>>10)
	var undo []func()
	restore = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	set := func(path, want string) error {
		old, err := sysfsChoice(path)
		if err != nil || old == want {
			return err
		}
		if err := os.WriteFile(path, []byte(want), 0); err != nil {
			return err
		}
		fmt.Fprintf(log, "sealbuf bench: set %s from %s to %s for transparent huge pages; it is restored afterwards\n", path, old, want)
		undo = append(undo, func() {
			if err := os.WriteFile(path, []byte(old), 0); err != nil {
				fmt.Fprintf(log, "sealbuf bench: could not restore %s to %s: %v\n", path, old, err)
				return
			}
			fmt.Fprintf(log, "sealbuf bench: restored %s to %s\n", path, old)
		})
		return nil
	}
	if err := set(thpShmemEnabled, "advise"); err != nil {
		return restore, fmt.Errorf("%w; setting %s to advise failed: %w", why, thpShmemEnabled, err)
	}
	if old, err := sysfsChoice(perSize); err == nil && old == "never" {
		if err := set(perSize, "inherit"); err != nil {
			return restore, fmt.Errorf("%w; setting %s to inherit failed: %w", why, perSize, err)
		}
	}
	if err := thpAvailable(size); err != nil {
		return restore, fmt.Errorf("with %s advise: %w", thpShmemEnabled, err)
	}
	return restore, nil
}
