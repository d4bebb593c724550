package main

import (
	"math/rand/v2"
	"strings"
)

// Names are raw bytes: anything but '/' and NUL, not "." or "..", at most
// 255 bytes. Most are plain; the rest are chosen to trip up whatever
// quotes, escapes, splits lines, decodes UTF-8 or assumes short names.

const nameMax = 255

const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"

func plainName(r *rand.Rand, min, max int) string {
	n := min + r.IntN(max-min+1)
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[r.IntN(len(alnum))]
	}
	return string(b)
}

// awkward fragments, each a valid name on its own.
var awkwardNames = []string{
	" ", "  ", " lead", "trail ", "two  spaces", "a b c",
	"\n", "new\nline", "line\n", "\nlead", "a\n\nb",
	"\t", "tab\there", "\ttab",
	"%", "100%", "%2F", "%00", "%%", "a%0Ab", "%25", "%n%s%x",
	"-", "--", "-rf", "--help", "-n", "--root=x", "-\n-",
	"\xff", "\xfe", "\xff\xfe", "x\xffy", "\xc3\x28", "\x80abc", "\xed\xa0\x80", "\xf0\x28\x8c\x28", "\xc0\xaf",
	"\x01\x02\x03", "\x1b[31mred\x1b[0m", "cr\rlf", "\r", "\x7f", "bell\a",
	`quote"d`, "apo'strophe", "`tick`", "$(echo x)", "${HOME}", "*", "?", "[a-z]", "back\\slash", "\\", "a|b", "semi;colon", "&", "<>",
	"caf\xc3\xa9", "cafe\xcc\x81", "日本語", "emoji😀", "\u202ertl", "\ufeffbom", "\u00a0nbsp", "Ω≈ç√",
	"...", ".hidden", "..x", "x.", " .", ". ", ".georep", ".georep-tmp", ".gfid", "CHANGELOG.1", "INDEX", "status.sock",
	"=", "#hash", "~tilde", "@at", ":colon", "a:b:c", "+plus",
}

// shortNames are for deep chains, where every byte of a path counts.
var shortNames = []string{"a", "b", "z", "0", " ", "\n", "\t", "%", "-", "\xff", "\xfe", "é", "~", "#", ".x", "..."}

// genName returns a name (it may collide with an existing one; callers check).
func genName(r *rand.Rand) string {
	p := r.IntN(100)
	switch {
	case p < 62:
		s := plainName(r, 1, 14)
		if r.IntN(4) == 0 {
			s += []string{".txt", ".dat", ".go", ".tar.gz", ".", ".bak"}[r.IntN(6)]
		}
		return s
	case p < 82:
		s := awkwardNames[r.IntN(len(awkwardNames))]
		switch r.IntN(3) {
		case 0:
			return s
		case 1:
			return s + plainName(r, 1, 6)
		default:
			return plainName(r, 1, 6) + s
		}
	case p < 88:
		return longName(r, nameMax)
	case p < 92:
		return longName(r, 180+r.IntN(nameMax-180))
	default:
		// A mix of awkward fragments.
		var b strings.Builder
		for i := 0; i < 2+r.IntN(3); i++ {
			b.WriteString(awkwardNames[r.IntN(len(awkwardNames))])
		}
		s := b.String()
		if len(s) > nameMax {
			s = s[:nameMax]
		}
		if s == "." || s == ".." {
			s += "x"
		}
		return s
	}
}

// longName is n bytes: mostly plain, with spaces, '%' and bytes that are not UTF-8.
func longName(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		switch r.IntN(20) {
		case 0:
			b[i] = ' '
		case 1:
			b[i] = '%'
		case 2:
			b[i] = 0x80 + byte(r.IntN(128)) // lone continuation / invalid lead bytes
		case 3:
			b[i] = '\n'
		default:
			b[i] = alnum[r.IntN(len(alnum))]
		}
	}
	b[0] = 'L'
	return string(b)
}

func shortName(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return plainName(r, 1, 6)
	}
	return shortNames[r.IntN(len(shortNames))]
}

// validName reports whether s can be a directory entry name.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= nameMax && !strings.ContainsAny(s, "/\x00")
}

// xattrName is a user.* name, sometimes with odd bytes.
func xattrName(r *rand.Rand) string {
	switch r.IntN(6) {
	case 0:
		return "user." + awkwardNames[r.IntN(len(awkwardNames))]
	case 1:
		return "user.a.b.c" + plainName(r, 0, 3)
	default:
		return "user." + plainName(r, 1, 10)
	}
}

// symlinkOdd is a symlink target with odd bytes (never NUL, never empty).
func symlinkOdd(r *rand.Rand) string {
	switch r.IntN(8) {
	case 0:
		return "\n"
	case 1:
		return "a\nb\tc %s %n \xff\xfe"
	case 2:
		return strings.Repeat("../", 1+r.IntN(60)) + "etc/passwd"
	case 3:
		// Long: up to PATH_MAX-1 bytes (4095, ext4's limit for a target).
		n := 256 + r.IntN(4095-256)
		b := []byte(longName(r, n))
		for i := 0; i < n; i += 1 + r.IntN(200) {
			b[i] = '/'
		}
		b[0] = 'x'
		return string(b)
	case 4:
		return "//double//slashes//" + awkwardNames[r.IntN(len(awkwardNames))]
	case 5:
		return "./.././" + awkwardNames[r.IntN(len(awkwardNames))]
	case 6:
		return "/"
	default:
		return awkwardNames[r.IntN(len(awkwardNames))] + "/" + awkwardNames[r.IntN(len(awkwardNames))]
	}
}
