//go:build linux

package testutil_test

import "unsafe"

func unsafeAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
