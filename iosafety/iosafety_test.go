package iosafety_test

import (
	"strings"
	"testing"

	"github.com/sealbuf/sealbuf/iosafety"
	"golang.org/x/tools/go/analysis/analysistest"
)

func TestFdCall(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), iosafety.Analyzer, "fdcall")
}

func TestFdEscape(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), iosafety.Analyzer, "escape")
}

func TestFdField(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), iosafety.Analyzer, "field")
}

func TestNewFile(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), iosafety.Analyzer, "newfile")
}

func TestBorrowedClose(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), iosafety.Analyzer, "closes")
}

func TestSharedStateAndCloexec(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), iosafety.Analyzer, "shared")
}

func TestIdiomaticCodeIsClean(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), iosafety.Analyzer, "clean")
}

func TestAllowDirective(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), iosafety.Analyzer, "allow")
}

func TestSuggestedFixes(t *testing.T) {
	analysistest.RunWithSuggestedFixes(t, analysistest.TestData(), iosafety.Analyzer, "fixes")
}

func TestDisableFlag(t *testing.T) {
	if err := iosafety.Analyzer.Flags.Set("disable", "fd-field, newfile"); err != nil {
		t.Fatal(err)
	}
	defer iosafety.Analyzer.Flags.Set("disable", "")
	analysistest.Run(t, analysistest.TestData(), iosafety.Analyzer, "disabled")
}

func TestCategories(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range iosafety.Categories {
		if seen[c] {
			t.Errorf("category %q listed twice", c)
		}
		seen[c] = true
		if !strings.Contains(iosafety.Analyzer.Doc, c) {
			t.Errorf("Analyzer.Doc does not describe category %q", c)
		}
	}
	if len(seen) != 7 {
		t.Errorf("got %d categories, want 7", len(seen))
	}
}
