package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// completionScript is `georep completion SHELL`, written to a file.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"completion", shell}, &out, &errb); code != 0 {
		t.Fatalf("georep completion %s: exit %d: %s", shell, code, errb.String())
	}
	path := filepath.Join(t.TempDir(), "georep."+shell)
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func findComp(cmds []compCmd, path string) *compCmd {
	var found *compCmd
	walkComp(cmds, func(c compCmd) {
		if c.path == path {
			found = &c
		}
	})
	return found
}

func findFlag(c *compCmd, name string) *compFlag {
	for i := range c.flags {
		if c.flags[i].name == name {
			return &c.flags[i]
		}
	}
	return nil
}

var flagLineRE = regexp.MustCompile(`(?m)^  -\S`)

// TestCompletionSpec pins what the scripts are made from: every command,
// the subcommands their usage names, and every flag each -h lists (so a
// change in how the flag package prints its defaults fails here, not in a
// user's shell).
func TestCompletionSpec(t *testing.T) {
	spec := completionSpec(context.Background())
	for _, c := range commands() {
		if findComp(spec, c.name) == nil {
			t.Errorf("command %q missing", c.name)
		}
	}
	for path, subs := range map[string][]string{
		"cert": {"init", "issue"}, "changelog": {"dump"}, "checkpoint": {"set", "clear"}, "trash": {"list", "restore"},
		"config": {"get", "set", "reset"}, "session": {"delete"},
	} {
		c := findComp(spec, path)
		var got []string
		for _, s := range c.subs {
			got = append(got, s.name)
		}
		if !slices.Equal(got, subs) {
			t.Errorf("%s: subcommands %q, want %q", path, got, subs)
		}
	}
	if c := findComp(spec, "cert init"); c == nil || c.short == "" {
		t.Errorf("cert init has no description: %+v", c)
	}
	// Every flag line of every command's help is read as a flag.
	cmdByName := map[string]command{}
	for _, c := range commands() {
		cmdByName[c.name] = c
	}
	walkComp(spec, func(c compCmd) {
		if len(c.subs) > 0 || c.name == "completion" {
			return
		}
		words := strings.Fields(c.path)
		help := helpText(context.Background(), cmdByName[words[0]], append(words[1:], "-h")...)
		if n := len(flagLineRE.FindAllString(help, -1)); n != len(c.flags) {
			t.Errorf("%s: %d flags read, %d in its help:\n%s", c.path, len(c.flags), n, help)
		}
	})
	master := findComp(spec, "master")
	for name, want := range map[string]compFlag{
		"root":      {arg: "string"},
		"slave":     {arg: "string"},
		"oneshot":   {arg: ""},
		"exclude":   {arg: "PATTERN", repeat: true},
		"tls-dir":   {arg: "georep cert"},
		"log-level": {arg: "string"},
	} {
		f := findFlag(master, name)
		if f == nil {
			t.Errorf("master --%s missing", name)
			continue
		}
		if f.arg != want.arg || f.repeat != want.repeat || f.usage == "" {
			t.Errorf("master --%s: %+v, want arg %q repeat %v and a usage", name, *f, want.arg, want.repeat)
		}
	}
	if f := findFlag(master, "change-interval"); f == nil || strings.Contains(f.usage, "(default") {
		t.Errorf("master --change-interval: %+v (the default is left out of the description)", f)
	}
	if f := findFlag(findComp(spec, "cert issue"), "role"); f == nil {
		t.Error("cert issue --role missing")
	} else if k, ch := f.kind(); k != "choice" || !slices.Equal(ch, []string{"master", "slave"}) {
		t.Errorf("cert issue --role: %s %q", k, ch)
	}
}

// bashComplete runs the bash script's completion function on words (the
// last one being completed) and returns what it offers.
func bashComplete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, shellWord(w))
	}
	prog := `source "$1" || exit 1
COMP_WORDS=(` + strings.Join(quoted, " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
_georep georep "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" || exit 1
printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog, "bash", script)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("completing %q: %v\n%s", words, err, errb.String())
	}
	if errb.Len() > 0 {
		t.Errorf("completing %q: stderr: %s", words, errb.String())
	}
	var got []string
	for _, l := range strings.Split(out.String(), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	slices.Sort(got)
	return got
}

func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("bash is needed to check the bash completion: %v", err)
	}
	script := completionScript(t, "bash")
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	dir := t.TempDir()
	for _, d := range []string{"sub dir", "second"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "some file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{"georep", "ma"}, []string{"master"}},
		{[]string{"georep", "c"}, []string{"cert", "changelog", "checkpoint", "completion", "config"}},
		{[]string{"georep", "master", "--ro"}, []string{"--root"}},
		{[]string{"georep", "master", "--root", "/x", "--sl"}, []string{"--slave", "--slave-name"}},
		{[]string{"georep", "master", "--log-level", ""}, []string{"debug", "error", "info", "trace", "warn"}},
		{[]string{"georep", "master", "--log-level", "="}, []string{"debug", "error", "info", "trace", "warn"}},
		{[]string{"georep", "master", "--log-level", "=", "d"}, []string{"debug"}},
		{[]string{"georep", "master", "--watcher", "f"}, []string{"fanotify"}},
		{[]string{"georep", "master", "--root", dir + "/s"}, []string{dir + "/second", dir + "/sub dir"}},
		{[]string{"georep", "master", "--exclude-from", dir + "/so"}, []string{dir + "/some file"}},
		{[]string{"georep", "cert", ""}, []string{"init", "issue"}},
		{[]string{"georep", "cert", "issue", "--r"}, []string{"--role"}},
		{[]string{"georep", "cert", "issue", "--role", "s"}, []string{"slave"}},
		{[]string{"georep", "checkpoint", "set", ""}, []string{"now"}},
		{[]string{"georep", "checkpoint", "set", "now", ""}, []string{"--config", "--root", "--session", "--slave", "--state-dir"}},
		{[]string{"georep", "checkpoint", "clear", "--"}, []string{"--config", "--root", "--session", "--slave", "--state-dir"}},
		{[]string{"georep", "trash", "restore", "--t"}, []string{"--time", "--to"}},
		{[]string{"georep", "completion", ""}, []string{"bash", "fish", "zsh"}},
		{[]string{"georep", "completion", "bash", ""}, nil},
		{[]string{"georep", "status", "--detail", "--j"}, []string{"--json"}},
		{[]string{"georep", "nosuch", "--"}, nil},
	} {
		if got := bashComplete(t, script, c.words...); !slices.Equal(got, c.want) {
			t.Errorf("completing %q: %q, want %q", c.words, got, c.want)
		}
	}
}

func TestCompletionZsh(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("zsh is not installed")
	}
	script := completionScript(t, "zsh")
	if out, err := exec.Command("zsh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	// Sourced, it registers itself for georep.
	out, err := exec.Command("zsh", "-f", "-c", `autoload -U compinit && compinit -u -D && source "$1" && print -r -- "$_comps[georep]"`, "zsh", script).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "_georep" {
		t.Fatalf("zsh: sourcing the script registers %q, %v; want _georep", out, err)
	}
}

func TestCompletionFish(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("fish is not installed")
	}
	script := completionScript(t, "fish")
	if out, err := exec.Command("fish", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("fish -n: %v\n%s", err, out)
	}
	for line, want := range map[string][]string{
		"georep ma":                            {"master"},
		"georep cert ":                         {"init", "issue"},
		"georep master --root /x --log-level ": {"debug", "error", "info", "trace", "warn"},
		"georep checkpoint clear --st":         {"--state-dir"},
		"georep completion ":                   {"bash", "fish", "zsh"},
	} {
		out, err := exec.Command("fish", "--no-config", "-c", `source $argv[1]; complete -C $argv[2]`, script, line).CombinedOutput()
		if err != nil {
			t.Fatalf("fish completing %q: %v\n%s", line, err, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			got = append(got, strings.SplitN(l, "\t", 2)[0])
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("fish completing %q: %q, want %q", line, got, want)
		}
	}
}

func TestCompletionCmdErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"completion"}, 2},
		{[]string{"completion", "tcsh"}, 2},
		{[]string{"completion", "bash", "zsh"}, 2},
		{[]string{"completion", "-h"}, 0},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), c.args, &out, &errb); code != c.code {
			t.Errorf("georep %q: exit %d, want %d (%s)", c.args, code, c.code, errb.String())
		}
		if c.code != 0 && !strings.Contains(errb.String(), "usage: georep completion") && !strings.Contains(errb.String(), "shell") {
			t.Errorf("georep %q: %q", c.args, errb.String())
		}
	}
}
