package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

const (
	// vaultStartTimeout bounds the wait for a Vault server to answer HTTP
	// and become active.
	vaultStartTimeout = 60 * time.Second
	// vaultStopGrace is how long Stop waits after SIGTERM before SIGKILL.
	vaultStopGrace = 5 * time.Second
)

// Vault is a real Vault server owned by one test. It is not a -dev server:
// it keeps its data in file storage under a temp dir, so its keys survive
// Stop and Start, and it is initialised with one unseal key that the struct
// keeps.
type Vault struct {
	// Addr is the API address, a URL such as http://127.0.0.1:41234.
	Addr string
	// RootToken is the initial root token.
	RootToken string

	t         testing.TB
	p         *proc
	unsealKey string
}

// StartVault starts a Vault server with file storage on a free loopback
// port, initialises it (one key share, threshold one), unseals it and waits
// until sys/health reports it unsealed and active. The server is killed when
// the test ends.
func StartVault(t testing.TB) *Vault {
	t.Helper()
	bin := vaultBin(t)
	port := freePort(t)
	addr := "http://" + hostPort(port)
	confDir := t.TempDir()
	conf := fmt.Sprintf(`storage "file" {
  path = %s
}
listener "tcp" {
  address     = %s
  tls_disable = 1
}
api_addr      = %s
disable_mlock = true
ui            = false
log_level     = "info"
`, strconv.Quote(filepath.Join(t.TempDir(), "storage")), strconv.Quote(hostPort(port)), strconv.Quote(addr))
	confPath := filepath.Join(confDir, "vault.hcl")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatalf("testenv: write vault config: %v", err)
	}
	v := &Vault{
		Addr: addr,
		t:    t,
		p:    newProc(t, "vault-"+strconv.Itoa(port), bin, []string{"server", "-config=" + confPath}),
	}
	// The server must not pick up the developer's Vault settings (VAULT_ADDR,
	// VAULT_TOKEN, ...); HOME is the temp dir so nothing is written there.
	v.p.env = append(envWithout(os.Environ(), "VAULT_"), "HOME="+confDir)
	v.p.start(t)

	c := v.newClient(t, "")
	v.waitHTTP(c)
	resp, err := c.Sys().Init(&vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("testenv: vault sys/init: %v", err)
	}
	if len(resp.KeysB64) != 1 || resp.RootToken == "" {
		t.Fatalf("testenv: vault sys/init returned %d keys and root token set=%t; want 1 key and a token",
			len(resp.KeysB64), resp.RootToken != "")
	}
	v.unsealKey, v.RootToken = resp.KeysB64[0], resp.RootToken
	v.Unseal()
	return v
}

// envWithout returns env minus the variables whose names start with prefix.
func envWithout(env []string, prefix string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// newClient returns a client for the server with the given token (none if
// empty), independent of the VAULT_* environment of the test process. The
// unauthenticated client that polls sys/health does not retry: the polling
// loop does, with its own bound.
func (v *Vault) newClient(t testing.TB, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	cfg.Timeout = 30 * time.Second
	if token == "" {
		cfg.MaxRetries = 0
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatalf("testenv: vault client: %v", err)
	}
	c.ClearNamespace()
	if token == "" {
		c.ClearToken()
	} else {
		c.SetToken(token)
	}
	return c
}

// Client returns a client authenticated with the root token.
func (v *Vault) Client(t testing.TB) *vaultapi.Client {
	t.Helper()
	return v.newClient(t, v.RootToken)
}

// waitHTTP waits until the server answers sys/health at all.
func (v *Vault) waitHTTP(c *vaultapi.Client) {
	v.t.Helper()
	v.p.waitFor(v.t, "HTTP answer on sys/health", vaultStartTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.Sys().HealthWithContext(ctx)
		return err
	})
}

// waitActive waits until sys/health reports the server initialised,
// unsealed and active.
func (v *Vault) waitActive(c *vaultapi.Client) {
	v.t.Helper()
	v.p.waitFor(v.t, "unsealed and active", vaultStartTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		h, err := c.Sys().HealthWithContext(ctx)
		switch {
		case err != nil:
			return err
		case !h.Initialized:
			return errors.New("not initialized")
		case h.Sealed:
			return errors.New("sealed")
		case h.Standby:
			return errors.New("standby")
		}
		return nil
	})
}

// Seal seals the server with the root token. Calls then fail until Unseal.
func (v *Vault) Seal() {
	v.t.Helper()
	if err := v.Client(v.t).Sys().Seal(); err != nil {
		v.t.Fatalf("testenv: vault sys/seal: %v", err)
	}
}

// Unseal unseals the server with the kept key and waits until it is active.
func (v *Vault) Unseal() {
	v.t.Helper()
	c := v.newClient(v.t, "")
	if _, err := c.Sys().Unseal(v.unsealKey); err != nil {
		v.t.Fatalf("testenv: vault sys/unseal: %v", err)
	}
	v.waitActive(c)
}

// Stop sends SIGTERM, then SIGKILL if the server has not exited after a few
// seconds, and waits for the exit. The port stays assigned to v, so Start
// brings the server back at the same Addr.
func (v *Vault) Stop() {
	v.t.Helper()
	if !v.p.signal(syscall.SIGTERM, vaultStopGrace) {
		v.p.kill()
	}
}

// Pid is the server's process id, 0 when it is not running: a benchmark
// reads its CPU time.
func (v *Vault) Pid() int { return v.p.pid() }

// Start starts a stopped server again on the same port and storage, unseals
// it and waits until it is active.
func (v *Vault) Start() {
	v.t.Helper()
	v.p.start(v.t)
	c := v.newClient(v.t, "")
	v.waitHTTP(c)
	v.Unseal()
}
