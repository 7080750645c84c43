//go:build linux

package sealtest

import (
	"fmt"
	"os"
	"testing"
)

// peerEnv marks a process that StartPeer started to play the peer.
const peerEnv = "SEALTEST_PEER"

// Main is a TestMain for packages that use StartPeer or Start:
//
//	func TestMain(m *testing.M) { sealtest.Main(m) }
//
// In a peer process it plays the peer and exits; otherwise it runs the tests
// and exits with their status.
func Main(m *testing.M) {
	RunPeer()
	os.Exit(m.Run())
}

// RunPeer plays the peer and exits if this process is one that StartPeer
// started; otherwise it returns at once. Call it first thing in a TestMain
// that does more than Main does:
//
//	func TestMain(m *testing.M) {
//		sealtest.RunPeer()
//		goleak.VerifyTestMain(m)
//	}
//
// or from an init function of a _test.go file, where the package's TestMain
// is not yours to change (it then runs before any TestMain):
//
//	func init() { sealtest.RunPeer() }
//
// StartPeer runs the test binary again with an environment variable set and
// "-test.run=^$", so a binary that forgot RunPeer runs no tests, and
// StartPeer reports what is missing.
func RunPeer() {
	if os.Getenv(peerEnv) != "1" {
		return
	}
	os.Unsetenv(peerEnv)
	os.Exit(runPeer())
}

func runPeer() int {
	//iosafety:allow newfile inherited from StartPeer as exec.Cmd.ExtraFiles[0], which is descriptor 3
	ctl, err := fileConn(os.NewFile(3, "sealtest-control"))
	if err == nil {
		err = serve(ctl)
		ctl.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sealtest peer:", err)
		return 2
	}
	return 0
}
