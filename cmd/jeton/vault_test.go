package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/integration/testenv"
)

func TestVaultPrintPolicies(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"vault", "setup", "--print-policies", "--key", "kek-x"}, nil, &out, &errb, func(string) string { return "" })
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"# policy jeton-jetond", "# policy jeton-custodian", `transit/encrypt/kek-x`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestVaultSetupOnARealVault(t *testing.T) {
	v := testenv.StartVault(t)
	t.Setenv("VAULT_ADDR", v.Addr)
	t.Setenv("VAULT_TOKEN", v.RootToken)
	secretFile := filepath.Join(t.TempDir(), "secret-id")

	var out, errb bytes.Buffer
	code := run([]string{"vault", "setup", "--approle", "--secret-id-file", secretFile}, nil, &out, &errb, os.Getenv)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	root := v.Client(t)
	key, err := root.Logical().Read("transit/keys/jeton-kek")
	if err != nil || key == nil {
		t.Fatalf("KEK not created: %v", err)
	}
	if key.Data["exportable"] != false || key.Data["allow_plaintext_backup"] != false || key.Data["type"] != "aes256-gcm96" {
		t.Errorf("KEK flags: exportable=%v allow_plaintext_backup=%v type=%v", key.Data["exportable"], key.Data["allow_plaintext_backup"], key.Data["type"])
	}
	for _, p := range []string{"jeton-jetond", "jeton-custodian"} {
		if pol, err := root.Sys().GetPolicy(p); err != nil || pol == "" {
			t.Errorf("policy %s not written: %v", p, err)
		}
	}
	st, err := os.Stat(secretFile)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() < 10 {
		t.Fatalf("secret_id file: %v, mode %v", err, st.Mode())
	}
	secret, _ := os.ReadFile(secretFile)
	if strings.Contains(out.String()+errb.String(), strings.TrimSpace(string(secret))) {
		t.Error("the secret_id was printed")
	}
	m := regexp.MustCompile(`approle role_id: (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no role_id printed:\n%s", out.String())
	}
	login, err := root.Logical().Write("auth/approle/login", map[string]any{"role_id": m[1], "secret_id": strings.TrimSpace(string(secret))})
	if err != nil || login.Auth == nil || !containsString(login.Auth.Policies, "jeton-jetond") {
		t.Fatalf("AppRole login with the issued credentials: %v", err)
	}

	// Running it again is harmless: the KEK and mount are kept.
	out.Reset()
	if code := run([]string{"vault", "setup"}, nil, &out, &errb, os.Getenv); code != exitOK || !strings.Contains(out.String(), "created: false") {
		t.Fatalf("second run: exit %d\n%s", code, out.String())
	}
}

func TestVaultSetupNeedsAToken(t *testing.T) {
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_TOKEN", "")
	var out, errb bytes.Buffer
	if code := run([]string{"vault", "setup"}, nil, &out, &errb, os.Getenv); code != exitUsage || !strings.Contains(errb.String(), "VAULT_TOKEN") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
