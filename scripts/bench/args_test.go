package main

import (
	"slices"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  --change-interval 100ms ", []string{"--change-interval", "100ms"}},
		{"--exclude *.tmp --exclude cache-*/ --exclude /build/", []string{"--exclude", "*.tmp", "--exclude", "cache-*/", "--exclude", "/build/"}},
		{"--exclude '*.tmp' --exclude \"cache-*/\"", []string{"--exclude", "*.tmp", "--exclude", "cache-*/"}},
		{"--exclude 'a b' x''y", []string{"--exclude", "a b", "xy"}},
		{"''", []string{""}},
	} {
		got, err := splitArgs(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := splitArgs("--exclude '*.tmp"); err == nil {
		t.Error("unterminated quote: no error")
	}
}

func TestRulesTreeHalf(t *testing.T) {
	dir := t.TempDir()
	tree, err := genRulesTree(dir+"/full", 1000, 10, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := genRulesTree(dir+"/half", 1000, 10, false); err != nil {
		t.Fatal(err)
	}
	if tree.exclFiles() != 500 || tree.inclFiles != 500 || tree.files != 1000 {
		t.Errorf("counts: %+v", tree)
	}
	full, _ := summarize(dir + "/full")
	half, _ := summarize(dir + "/half")
	if full.files != 1000 || half.files != 500 || half.bytes != tree.inclBytes {
		t.Errorf("trees: full %v, half %v", full, half)
	}
}
