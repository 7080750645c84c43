// Package nomain is a package whose tests use sealtest.StartPeer but forgot
// sealtest.Main (and RunPeer): sealtest's TestStartPeerWithoutMain builds
// its test binary with "go test -c" and checks that StartPeer says what is
// missing instead of failing obscurely.
package nomain
