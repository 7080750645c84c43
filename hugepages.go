//go:build linux

package sealbuf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

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
	file, mem, err := newMapped(name, size, memfd.WithHugeTLB(pageSize))
	if errors.Is(err, unix.ENOMEM) {
		err = fmt.Errorf("huge pages: the pool has too few free pages of %d bytes for %d bytes (raise /proc/sys/vm/nr_hugepages): %w", ps, size, err)
	}
	return file, mem, err
}
