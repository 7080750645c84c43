//go:build linux

// Package testutil holds what sealbuf's own tests share across packages:
// build facts, socket pairs, descriptor and mapping counts. It is imported
// by test files only.
package testutil
