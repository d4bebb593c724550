package testenv

import (
	"testing"

	"github.com/georep/georep/internal/gfid"
)

// NewGFID returns a fresh gfid, failing t if none can be made.
func NewGFID(t testing.TB) gfid.GFID {
	t.Helper()
	g, err := gfid.New()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// MustGFID parses s as a gfid, failing t if it is not one.
func MustGFID(t testing.TB, s string) gfid.GFID {
	t.Helper()
	g, err := gfid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
