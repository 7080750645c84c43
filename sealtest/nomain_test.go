//go:build linux

package sealtest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStartPeerWithoutMain builds the tests of testdata/nomain — a package
// that calls StartPeer but forgot sealtest.Main — into a binary of their
// own, runs it, and checks that StartPeer's error says what to add, rather
// than showing the testing package's flag usage.
func TestStartPeerWithoutMain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a test binary with the go command")
	}
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH to build testdata/nomain:", err)
	}
	bin := filepath.Join(t.TempDir(), "nomain.test")
	build := exec.Command(gocmd, "test", "-c", "-o", bin, "./testdata/nomain")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go test -c ./testdata/nomain: %s", out)

	run := exec.Command(bin, "-test.run=^TestStartPeer$", "-test.v")
	run.Env = os.Environ()
	out, err = run.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "the peer process exited without playing the peer: "+
		"call sealtest.Main(m) or sealtest.RunPeer() first thing in TestMain")
	require.NotContains(t, string(out), "fuzzcachedir")
	require.NotContains(t, string(out), "Usage of")
}
