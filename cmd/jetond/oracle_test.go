package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/server/devpki"
)

// TestRefusesUnbudgetedOracle: jetond, configured with a deterministic
// class, refuses to start on a policy that lets a sponsor role tokenize it
// without a distinct budget, and names the role; with the budget it
// starts.
func TestRefusesUnbudgetedOracle(t *testing.T) {
	e := newProdEnv(t)
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Every built-in class is random: a deployment opts in per class.
	cfg = append(cfg, []byte("classes:\n  - {name: member-id, kind: deterministic, normalize: [trim, upper], mask: last3, max_len: 32}\n  - {name: name, mask: initials}\n")...)
	if err := os.WriteFile(e.cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	policy := func(budget string) string {
		return fmt.Sprintf(`identities:
  - {id: %q, tenants: [demo], roles: [member-desk]}
  - {id: %q, tenants: [demo], roles: [ttp-reader]}
roles:
  member-desk: {tokenize: [name, member-id]%s}
  ttp-reader: {reveal: {"*": full}, purposes: [support]}
purposes:
  - {code: support, description: answering a data subject, classes: ["*"]}
`, devpki.SponsorID, devpki.TTPID, budget)
	}
	writeAtomically(t, e.policyPath, []byte(policy(", budget: {max_batch: 100, rate: 10, burst: 100}")))

	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "JETON_") {
			env = append(env, kv)
		}
	}
	env = append(env, "VAULT_ADDR="+e.vault.Addr, "VAULT_TOKEN="+e.token)
	ctx, cancel := context.WithTimeout(context.Background(), startLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, jetondBinary(t), "--config", e.cfgPath)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("jetond did not exit on the unbudgeted policy:\n%s", tailLines(out.String(), 20))
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("jetond exited with %v, want status 1:\n%s", err, tailLines(out.String(), 20))
	}
	if !strings.Contains(out.String(), "roles.member-desk may tokenize the deterministic class member-id") {
		t.Fatalf("the refusal does not name the role and the class:\n%s", tailLines(out.String(), 20))
	}

	// With a distinct budget, the same configuration starts.
	writeAtomically(t, e.policyPath, []byte(policy(", budget: {max_batch: 100, rate: 10, burst: 100, distinct: 5000}")))
	e.start(t)
}
