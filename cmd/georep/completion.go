package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// `georep completion bash|zsh|fish` prints a completion script made from
// the commands list (commands()) and each command's flags. The flag sets
// are built inside the commands' run functions, so the script's maker
// learns them the way a user does: it runs each command (and each
// subcommand its usage names) with -h, under a cancelled context, into a
// buffer, and reads the flag package's listing (TestCompletionSpec pins
// that reading to the flags the commands have). A command or flag added
// later is in the script with no change here; only the kinds of values
// (a directory, a file, a choice) are listed below by flag name.

func completionUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: georep completion bash|zsh|fish")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Prints a completion script for the shell (commands, subcommands, flags, their values):")
	fmt.Fprintln(w, "  bash   source <(georep completion bash); or save it as /usr/share/bash-completion/completions/georep")
	fmt.Fprintln(w, "  zsh    save it as _georep in a directory of $fpath, then compinit; or source <(georep completion zsh)")
	fmt.Fprintln(w, "  fish   save it as ~/.config/fish/completions/georep.fish; or georep completion fish | source")
}

var completionShells = []string{"bash", "zsh", "fish"}

func runCompletionCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			completionUsage(stderr)
			return flag.ErrHelp
		}
	}
	if len(args) != 1 {
		completionUsage(stderr)
		return usageErr("want one shell: bash, zsh or fish")
	}
	var write func(io.Writer, []compCmd)
	switch args[0] {
	case "bash":
		write = writeBashCompletion
	case "zsh":
		write = writeZshCompletion
	case "fish":
		write = writeFishCompletion
	default:
		return usageErr("unknown shell %q (want bash, zsh or fish)", args[0])
	}
	var b bytes.Buffer
	write(&b, completionSpec(ctx))
	if _, err := stdout.Write(b.Bytes()); err != nil {
		return fmt.Errorf("writing the %s completion script: %w", args[0], err)
	}
	return nil
}

// compCmd is a command, or a subcommand, as completion sees it.
type compCmd struct {
	name  string // "master", or "init" under "cert"
	path  string // "master", "cert init"
	short string
	flags []compFlag
	subs  []compCmd
	// args are the words a positional argument may be.
	args []string
}

// compFlag is one flag.
type compFlag struct {
	name  string
	arg   string // the value's name ("string", "int", "PATTERN", ...); "" for a boolean flag
	usage string
	// repeat: it may be given more than once.
	repeat bool
}

// kind says what a flag's value is: "dir", "file", "choice" (choices) or
// "" (anything: no completion).
func (f compFlag) kind() (kind string, choices []string) {
	if c, ok := flagChoices[f.name]; ok {
		return "choice", c
	}
	switch {
	case f.arg == "DIR" || dirFlags[f.name]:
		return "dir", nil
	case f.arg == "FILE" || fileFlags[f.name]:
		return "file", nil
	}
	return "", nil
}

// flagChoices are the values a flag takes, by flag name.
var flagChoices = map[string][]string{
	"log-level":       {"trace", "debug", "info", "warn", "error"},
	"watcher":         {"auto", "fanotify", "inotify"},
	"change-detector": {"changelog", "xsync"},
	"role":            {"master", "slave"},
}

// dirFlags and fileFlags are the flags, by name, whose value is a
// directory or a file.
var (
	dirFlags  = map[string]bool{"root": true, "state-dir": true, "dir": true, "tls-dir": true, "out": true}
	fileFlags = map[string]bool{"ca": true, "cert": true, "key": true, "exclude-from": true, "cpuprofile": true,
		"memprofile": true, "config": true, "to": true}
)

// positionalArgs are the words a command's positional argument may be.
var positionalArgs = map[string][]string{
	"completion":     completionShells,
	"checkpoint set": {"now"},
}

// completionSpec lists the commands, their subcommands and flags.
func completionSpec(ctx context.Context) []compCmd {
	// The commands only print their usage for -h; a cancelled context
	// makes sure that nothing more could run.
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	var cmds []compCmd
	for _, c := range commands() {
		cc := compCmd{name: c.name, path: c.name, short: c.short, args: positionalArgs[c.name]}
		if c.name == "completion" {
			cmds = append(cmds, cc)
			continue
		}
		help := helpText(ctx, c, "-h")
		subs, subShort := parseSubcommands(help, c.name)
		if len(subs) == 0 {
			cc.flags = parseFlagHelp(help)
		}
		for _, s := range subs {
			path := c.name + " " + s
			cc.subs = append(cc.subs, compCmd{name: s, path: path, short: subShort[s],
				flags: parseFlagHelp(helpText(ctx, c, s, "-h")), args: positionalArgs[path]})
		}
		cmds = append(cmds, cc)
	}
	return cmds
}

// helpText is what a command prints for args (ending in -h).
func helpText(ctx context.Context, c command, args ...string) string {
	var b bytes.Buffer
	c.run(ctx, args, io.Discard, &b) // flag.ErrHelp, or a usage error: only the text matters
	return b.String()
}

var (
	// "  -name type\n    \tusage" or "  -x\tusage", as flag.PrintDefaults
	// writes them; the type is a back-quoted name from the usage when it
	// has one, which may hold spaces ("georep cert").
	flagHeadRE = regexp.MustCompile(`^  -([^\s=]+)(?: ([^\t]+))?(?:\t(.*))?$`)
	// "usage: georep cert init ..." and "       georep cert issue ...".
	subUsageRE = regexp.MustCompile(`^(?:usage:)?\s*georep (\S+) ([a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*)(?:\s|$)`)
	// "  init    make a certificate authority ...".
	subShortRE   = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)\s{2,}(\S.*)$`)
	defaultValRE = regexp.MustCompile(` \(default .*\)$`)
)

// parseFlagHelp reads the flags flag.PrintDefaults lists in help.
func parseFlagHelp(help string) []compFlag {
	var flags []compFlag
	var cur *compFlag
	for _, line := range strings.Split(help, "\n") {
		if m := flagHeadRE.FindStringSubmatch(line); m != nil {
			flags = append(flags, compFlag{name: m[1], arg: m[2], usage: m[3]})
			cur = &flags[len(flags)-1]
			continue
		}
		if rest, ok := strings.CutPrefix(line, "    \t"); ok && cur != nil {
			cur.usage = strings.TrimSpace(cur.usage + " " + rest)
			continue
		}
		cur = nil
	}
	for i := range flags {
		f := &flags[i]
		f.usage = defaultValRE.ReplaceAllString(f.usage, "")
		f.repeat = strings.Contains(f.usage, "repeat")
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i].name < flags[j].name })
	return flags
}

// parseSubcommands reads the subcommands a command's usage names
// ("usage: georep NAME SUB ...", one a line, or SUB|SUB), and the one-line
// descriptions it gives them ("  SUB   what it does").
func parseSubcommands(help, name string) (subs []string, short map[string]string) {
	short = map[string]string{}
	seen := map[string]bool{}
	for _, line := range strings.Split(help, "\n") {
		if m := subUsageRE.FindStringSubmatch(line); m != nil && m[1] == name {
			for _, s := range strings.Split(m[2], "|") {
				if !seen[s] {
					seen[s] = true
					subs = append(subs, s)
				}
			}
		}
	}
	for _, line := range strings.Split(help, "\n") {
		if m := subShortRE.FindStringSubmatch(line); m != nil && seen[m[1]] {
			short[m[1]] = m[2]
		}
	}
	return subs, short
}

// walkComp calls fn for every command and subcommand.
func walkComp(cmds []compCmd, fn func(c compCmd)) {
	for _, c := range cmds {
		fn(c)
		walkComp(c.subs, fn)
	}
}

// flagKinds gathers every flag name's value kind, for the scripts'
// value completion (by flag name: the same name is the same kind of value
// in every command).
func flagKinds(cmds []compCmd) (dirs, files []string, choices map[string][]string) {
	seen := map[string]bool{}
	choices = map[string][]string{}
	walkComp(cmds, func(c compCmd) {
		for _, f := range c.flags {
			if f.arg == "" || seen[f.name] {
				continue
			}
			seen[f.name] = true
			switch k, ch := f.kind(); k {
			case "dir":
				dirs = append(dirs, f.name)
			case "file":
				files = append(files, f.name)
			case "choice":
				choices[f.name] = ch
			}
		}
	})
	sort.Strings(dirs)
	sort.Strings(files)
	return dirs, files, choices
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// shellWord quotes s for bash and zsh: single quotes.
func shellWord(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// --- bash ---

func writeBashCompletion(w io.Writer, cmds []compCmd) {
	fmt.Fprint(w, `# bash completion for georep, generated by `+"`georep completion bash`"+`.
# Load it with: source <(georep completion bash)
# or save it as /usr/share/bash-completion/completions/georep.

# __georep_words PATH: the subcommands, or the words of a positional
# argument, after the command PATH ("" is georep itself).
__georep_words() {
    case $1 in
`)
	var top []string
	for _, c := range cmds {
		top = append(top, c.name)
	}
	fmt.Fprintf(w, "    '') echo %s ;;\n", shellWord(strings.Join(top, " ")))
	walkComp(cmds, func(c compCmd) {
		words := c.args
		for _, s := range c.subs {
			words = append(words[:len(words):len(words)], s.name)
		}
		if len(words) > 0 {
			fmt.Fprintf(w, "    %s) echo %s ;;\n", shellWord(c.path), shellWord(strings.Join(words, " ")))
		}
	})
	fmt.Fprint(w, `    esac
}

# __georep_has_subs PATH: whether PATH has subcommands.
__georep_has_subs() {
    case $1 in
`)
	walkComp(cmds, func(c compCmd) {
		if len(c.subs) > 0 {
			fmt.Fprintf(w, "    %s) return 0 ;;\n", shellWord(c.path))
		}
	})
	fmt.Fprint(w, `    esac
    return 1
}

# __georep_flags PATH: the flags of the command PATH.
__georep_flags() {
    case $1 in
`)
	walkComp(cmds, func(c compCmd) {
		if len(c.flags) == 0 {
			return
		}
		var names []string
		for _, f := range c.flags {
			names = append(names, "--"+f.name)
		}
		fmt.Fprintf(w, "    %s) echo %s ;;\n", shellWord(c.path), shellWord(strings.Join(names, " ")))
	})
	fmt.Fprint(w, `    esac
}

# __georep_takes_value PATH FLAG: whether FLAG (-name or --name) of the
# command PATH takes a value.
__georep_takes_value() {
    local name=${2#-}
    name=${name#-}
    case $1 in
`)
	walkComp(cmds, func(c compCmd) {
		var names []string
		for _, f := range c.flags {
			if f.arg != "" {
				names = append(names, f.name)
			}
		}
		if len(names) > 0 {
			fmt.Fprintf(w, "    %s) [[ ' %s ' == *\" $name \"* ]] ;;\n", shellWord(c.path), strings.Join(names, " "))
		}
	})
	fmt.Fprint(w, `    *) return 1 ;;
    esac
}

# __georep_value FLAG CUR: completes the value of FLAG.
__georep_value() {
    local name=${1#-}
    name=${name#-}
    case $name in
`)
	dirs, files, choices := flagKinds(cmds)
	for _, name := range sortedKeys(choices) {
		fmt.Fprintf(w, "    %s) COMPREPLY=($(compgen -W %s -- \"$2\")) ;;\n", shellWord(name), shellWord(strings.Join(choices[name], " ")))
	}
	if len(dirs) > 0 {
		fmt.Fprintf(w, "    %s)\n        compopt -o filenames 2>/dev/null\n        mapfile -t COMPREPLY < <(compgen -d -- \"$2\") ;;\n", strings.Join(dirs, "|"))
	}
	if len(files) > 0 {
		fmt.Fprintf(w, "    %s)\n        compopt -o filenames 2>/dev/null\n        mapfile -t COMPREPLY < <(compgen -f -- \"$2\") ;;\n", strings.Join(files, "|"))
	}
	fmt.Fprint(w, `    esac
}

_georep() {
    COMPREPLY=()
    local cur=${COMP_WORDS[COMP_CWORD]} prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD-1]}
    # The command and subcommand typed so far, flags and their values
    # skipped (bash splits --flag=value into --flag, =, value), and how
    # many positional arguments follow them.
    local path='' i w skip= nargs=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        if [[ $w == = ]]; then
            skip=1
            continue
        fi
        if [[ -n $skip ]]; then
            skip=
            continue
        fi
        case $w in
        -*=*) continue ;;
        -*)
            __georep_takes_value "$path" "$w" && skip=1
            continue
            ;;
        esac
        if [[ -z $path ]]; then
            path=$w
        elif [[ $path != *' '* ]] && __georep_has_subs "$path"; then
            path="$path $w"
        else
            nargs=$((nargs + 1))
        fi
    done
    # A flag's value.
    if [[ $cur == = ]]; then
        __georep_value "$prev" ''
        return 0
    fi
    if [[ $prev == = ]] && ((COMP_CWORD > 1)); then
        __georep_value "${COMP_WORDS[COMP_CWORD-2]}" "$cur"
        return 0
    fi
    if [[ $prev == -* && $prev != *=* ]] && __georep_takes_value "$path" "$prev"; then
        __georep_value "$prev" "$cur"
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(__georep_flags "$path")" -- "$cur"))
        return 0
    fi
    local words=
    ((nargs == 0)) && words=$(__georep_words "$path")
    if [[ -z $words && -z $cur ]]; then
        words=$(__georep_flags "$path")
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    return 0
}

complete -F _georep georep
`)
}

// --- zsh ---

// zshDesc makes a description safe inside an _arguments spec or a
// _describe item (quoted whole by shellWord after): brackets would end
// the spec's explanation, a backslash escapes, a colon separates.
func zshDesc(s string) string {
	return strings.NewReplacer("[", "(", "]", ")", "\\", "", "\n", " ").Replace(s)
}

func writeZshCompletion(w io.Writer, cmds []compCmd) {
	fmt.Fprint(w, `#compdef georep
# zsh completion for georep, generated by `+"`georep completion zsh`"+`.
# Save it as _georep in a directory of $fpath (then compinit), or load it
# with: source <(georep completion zsh)

`)
	writeZshFunc(w, "_georep", "georep", cmds)
	walkComp(cmds, func(c compCmd) {
		if len(c.subs) > 0 {
			writeZshFunc(w, "_georep_"+strings.ReplaceAll(c.path, " ", "_"), "georep "+c.path, c.subs)
		}
	})
	fmt.Fprint(w, `if [ "$funcstack[1]" = "_georep" ]; then
    _georep "$@"
else
    compdef _georep georep
fi
`)
}

// writeZshFunc writes a function that completes a command among cmds,
// then the chosen command's flags and arguments.
func writeZshFunc(w io.Writer, fn, what string, cmds []compCmd) {
	fmt.Fprintf(w, "%s() {\n", fn)
	fmt.Fprint(w, "    local curcontext=$curcontext state line ret=1\n    typeset -A opt_args\n")
	fmt.Fprint(w, "    _arguments -C '1: :->cmd' '*:: :->args' && ret=0\n")
	fmt.Fprint(w, "    case $state in\n    cmd)\n        local -a cmds\n        cmds=(\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "            %s\n", shellWord(c.name+":"+zshDesc(c.short)))
	}
	fmt.Fprintf(w, "        )\n        _describe -t commands '%s command' cmds && ret=0\n        ;;\n", what)
	fmt.Fprint(w, "    args)\n        case $words[1] in\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "        %s)\n", shellWord(c.name))
		if len(c.subs) > 0 {
			fmt.Fprintf(w, "            _georep_%s && ret=0\n            ;;\n", strings.ReplaceAll(c.path, " ", "_"))
			continue
		}
		specs := []string{"-S"}
		for _, f := range c.flags {
			specs = append(specs, zshFlagSpec(f))
		}
		if len(c.args) > 0 {
			specs = append(specs, shellWord("1:: :("+strings.Join(c.args, " ")+")"))
		}
		fmt.Fprintf(w, "            _arguments %s && ret=0\n            ;;\n", strings.Join(specs, " \\\n                "))
	}
	fmt.Fprint(w, "        esac\n        ;;\n    esac\n    return ret\n}\n\n")
}

// zshFlagSpec is a flag's _arguments spec, quoted: --name=[what]:value:action
// (the value in the next word or after =), *-- when it repeats.
func zshFlagSpec(f compFlag) string {
	var b strings.Builder
	if f.repeat {
		b.WriteString("*")
	}
	b.WriteString("--" + f.name)
	if f.arg == "" {
		fmt.Fprintf(&b, "[%s]", zshDesc(f.usage))
		return shellWord(b.String())
	}
	msg := strings.ToLower(f.arg)
	if msg == "value" || msg == "string" {
		msg = f.name
	}
	action := ""
	switch k, choices := f.kind(); k {
	case "dir":
		action = "_files -/"
	case "file":
		action = "_files"
	case "choice":
		action = "(" + strings.Join(choices, " ") + ")"
	}
	fmt.Fprintf(&b, "=[%s]:%s:%s", zshDesc(f.usage), zshDesc(strings.ReplaceAll(msg, ":", " ")), action)
	return shellWord(b.String())
}

// --- fish ---

// fishWord quotes s for fish: single quotes, with \ and ' escaped.
func fishWord(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`, "\n", " ").Replace(s) + "'"
}

func writeFishCompletion(w io.Writer, cmds []compCmd) {
	fmt.Fprint(w, `# fish completion for georep, generated by `+"`georep completion fish`"+`.
# Save it as ~/.config/fish/completions/georep.fish, or load it with:
# georep completion fish | source

# __georep_has_subs PATH: whether the command PATH has subcommands.
function __georep_has_subs
    switch $argv[1]
`)
	walkComp(cmds, func(c compCmd) {
		if len(c.subs) > 0 {
			fmt.Fprintf(w, "        case %s\n            return 0\n", fishWord(c.path))
		}
	})
	fmt.Fprint(w, `    end
    return 1
end

# __georep_value_flags PATH: the flags of PATH that take a value.
function __georep_value_flags
    switch $argv[1]
`)
	walkComp(cmds, func(c compCmd) {
		var names []string
		for _, f := range c.flags {
			if f.arg != "" {
				names = append(names, f.name)
			}
		}
		if len(names) > 0 {
			fmt.Fprintf(w, "        case %s\n            echo %s\n", fishWord(c.path), strings.Join(names, " "))
		}
	})
	fmt.Fprint(w, `    end
end

# __georep_scan: how many positional arguments, then the command and
# subcommand, on the command line (flags and their values skipped).
function __georep_scan
    set -l words (commandline -opc)
    set -e words[1]
    set -l path ''
    set -l nargs 0
    set -l skip 0
    for w in $words
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $w
            case '-*=*'
                continue
            case '-*'
                set -l name (string replace -r -- '^--?' '' $w)
                if contains -- $name (string split ' ' -- (__georep_value_flags "$path"))
                    set skip 1
                end
                continue
        end
        if test -z "$path"
            set path $w
        else if not string match -q -- '* *' $path; and __georep_has_subs $path
            set path "$path $w"
        else
            set nargs (math $nargs + 1)
        end
    end
    echo $nargs
    echo $path
end

# __georep_at PATH [noargs]: whether the command line is at the command
# PATH (and, with noargs, before its positional arguments).
function __georep_at
    set -l r (__georep_scan)
    set -l path ''
    set -q r[2]; and set path $r[2]
    test "$path" = "$argv[1]"; or return 1
    if set -q argv[2]
        test "$r[1]" = 0; or return 1
    end
    return 0
end

complete -c georep -f
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "complete -c georep -n '__georep_at \"\"' -a %s -d %s\n", fishWord(c.name), fishWord(c.short))
	}
	walkComp(cmds, func(c compCmd) {
		cond := fishWord("__georep_at " + fishWord(c.path))
		condNoArgs := fishWord("__georep_at " + fishWord(c.path) + " noargs")
		for _, s := range c.subs {
			fmt.Fprintf(w, "complete -c georep -n %s -a %s -d %s\n", cond, fishWord(s.name), fishWord(s.short))
		}
		for _, a := range c.args {
			fmt.Fprintf(w, "complete -c georep -n %s -a %s\n", condNoArgs, fishWord(a))
		}
		for _, f := range c.flags {
			line := fmt.Sprintf("complete -c georep -n %s -l %s", cond, f.name)
			if f.arg != "" {
				switch k, choices := f.kind(); k {
				case "dir":
					line += " -x -a '(__fish_complete_directories)'"
				case "file":
					line += " -r -F"
				case "choice":
					line += " -x -a " + fishWord(strings.Join(choices, " "))
				default:
					line += " -x"
				}
			}
			fmt.Fprintf(w, "%s -d %s\n", line, fishWord(f.usage))
		}
	})
}
