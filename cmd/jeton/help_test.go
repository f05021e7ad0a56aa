package main

import (
	"slices"
	"strings"
	"testing"
)

// Every command and subcommand answers -h with exit 0 and a description:
// more than a flag list. The commands are enumerated from the tables the
// CLI dispatches on, so a new one without help fails here.
func TestEveryCommandHasHelp(t *testing.T) {
	var invocations [][]string
	for name := range commands {
		invocations = append(invocations, []string{name, "-h"})
	}
	for name := range adminCommands {
		invocations = append(invocations, []string{"admin", name, "-h"})
	}
	invocations = append(invocations,
		[]string{"csv", "tokenize", "-h"}, []string{"csv", "detokenize", "-h"},
		[]string{"audit", "verify", "-h"}, []string{"audit", "archive", "-h"},
		[]string{"audit", "public-key", "-h"}, []string{"audit", "checkpoint", "-h"},
		[]string{"vault", "setup", "-h"},
		[]string{"help"}, []string{"-h"}, []string{"--help"})
	slices.SortFunc(invocations, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	for _, args := range invocations {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			got := jeton(t, nil, "", args...)
			text := got.stdout + got.stderr
			if got.code != exitOK {
				t.Fatalf("exit %d, want 0; output %q", got.code, text)
			}
			// A description: some prose line that is neither the usage
			// line nor a flag.
			prose := 0
			for _, line := range strings.Split(text, "\n") {
				if strings.HasPrefix(strings.TrimLeft(line, " "), "\t") {
					continue // a flag's help (flag.PrintDefaults), not a description
				}
				l := strings.TrimSpace(line)
				if len(l) > 30 && !strings.HasPrefix(l, "Usage:") && !strings.HasPrefix(l, "-") && strings.Contains(l, " ") {
					prose++
				}
			}
			if prose < 2 {
				t.Errorf("help has no description:\n%s", text)
			}
		})
	}
}

// Where a command takes classes, its help lists them.
func TestHelpListsClasses(t *testing.T) {
	for _, args := range [][]string{{"tokenize", "-h"}, {"csv", "tokenize", "-h"}, {"csv", "-h"}} {
		got := jeton(t, nil, "", args...)
		if text := got.stdout + got.stderr; !strings.Contains(text, "email, phone, name, passport, birthdate, address, text") {
			t.Errorf("%v: help does not list the classes:\n%s", args, text)
		}
	}
}

func TestVersion(t *testing.T) {
	got := jeton(t, nil, "", "version")
	if got.code != exitOK || !strings.HasPrefix(got.stdout, "jeton ") || !strings.Contains(got.stdout, "\ngo go1.") {
		t.Errorf("jeton version: exit %d, stdout %q", got.code, got.stdout)
	}
}
