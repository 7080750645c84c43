//go:build linux

package sealbuf

import (
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sealbuf/sealbuf/memfd"
)

// TestOpenWithAlwaysRequiresImmutable: a Sealed is read without a guard, so
// the seals that make that safe are openWith's own check, not something
// each caller's policy must remember (Open and Receive build theirs with
// newOpenPolicy; a policy written any other way, even the zero value, must
// not let an unsealed memfd through).
func TestOpenWithAlwaysRequiresImmutable(t *testing.T) {
	f, err := memfd.Create("open-with")
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, f.Truncate(8192))
	for _, p := range []openPolicy{{}, {maxSize: noLimit}, {require: memfd.SealShrink, maxSize: noLimit}} {
		var osf *os.File
		require.NoError(t, f.Control(func(fd int) error {
			osf, err = os.Open("/proc/self/fd/" + strconv.Itoa(fd))
			return err
		}))
		s, err := openWith(osf, p)
		if s != nil {
			s.Close()
		} else {
			osf.Close()
		}
		require.ErrorIs(t, err, ErrNotSealed, "policy %+v", p)
	}
}
