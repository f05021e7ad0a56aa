package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// VaultCluster is Vault HA on integrated storage (raft): several real Vault
// servers, one active and the others standbys that forward requests to it,
// initialised with one unseal key that the struct keeps. Each node is a
// *Vault, so a test can kill, start or seal one.
type VaultCluster struct {
	Nodes     []*Vault
	RootToken string
}

// StartVaultCluster starts n Vault servers with raft storage on free
// loopback ports, initialises the first, unseals it, joins the others to it
// through sys/storage/raft/join and unseals them, then waits until raft
// lists every node as a voter. raft's performance_multiplier is 1 (the
// value for production hardware), so a lost leader is replaced within
// seconds rather than the default's tens of seconds.
func StartVaultCluster(t testing.TB, n int) *VaultCluster {
	t.Helper()
	bin := vaultBin(t)
	vc := &VaultCluster{}
	for i := range n {
		port, clusterPort := freePort(t), freePort(t)
		addr := "http://" + hostPort(port)
		confDir := t.TempDir()
		id := "node" + strconv.Itoa(i+1)
		conf := fmt.Sprintf(`storage "raft" {
  path                   = %s
  node_id                = %q
  performance_multiplier = 1
}
listener "tcp" {
  address         = %s
  cluster_address = %s
  tls_disable     = 1
}
api_addr      = %s
cluster_addr  = %s
disable_mlock = true
ui            = false
log_level     = "info"
`, strconv.Quote(filepath.Join(confDir, "raft")), id, strconv.Quote(hostPort(port)),
			strconv.Quote(hostPort(clusterPort)), strconv.Quote(addr), strconv.Quote("https://"+hostPort(clusterPort)))
		if err := os.MkdirAll(filepath.Join(confDir, "raft"), 0o700); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		confPath := filepath.Join(confDir, "vault.hcl")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatalf("testenv: write vault config: %v", err)
		}
		v := &Vault{
			Addr: addr,
			t:    t,
			p:    newProc(t, "vault-"+id+"-"+strconv.Itoa(port), bin, []string{"server", "-config=" + confPath}),
		}
		v.p.env = append(envWithout(os.Environ(), "VAULT_"), "HOME="+confDir)
		v.p.start(t)
		vc.Nodes = append(vc.Nodes, v)
	}

	first := vc.Nodes[0]
	c := first.newClient(t, "")
	first.waitHTTP(c)
	resp, err := c.Sys().Init(&vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("testenv: vault sys/init: %v", err)
	}
	if len(resp.KeysB64) != 1 || resp.RootToken == "" {
		t.Fatalf("testenv: vault sys/init returned %d keys and root token set=%t", len(resp.KeysB64), resp.RootToken != "")
	}
	vc.RootToken = resp.RootToken
	for _, v := range vc.Nodes {
		v.unsealKey, v.RootToken = resp.KeysB64[0], resp.RootToken
	}
	first.Unseal()

	for _, v := range vc.Nodes[1:] {
		c := v.newClient(t, "")
		v.waitHTTP(c)
		v.p.waitFor(t, "raft join", vaultStartTimeout, func() error {
			r, err := c.Sys().RaftJoin(&vaultapi.RaftJoinRequest{LeaderAPIAddr: first.Addr})
			if err != nil {
				return err
			}
			if !r.Joined {
				return errors.New("join not accepted")
			}
			return nil
		})
		// A joined node learns the barrier keys from the leader once
		// unsealed; then it is a standby.
		v.p.waitFor(t, "unsealed standby", vaultStartTimeout, func() error {
			if _, err := c.Sys().Unseal(v.unsealKey); err != nil {
				return err
			}
			h, err := c.Sys().Health()
			switch {
			case err != nil:
				return err
			case h.Sealed:
				return errors.New("sealed")
			}
			return nil
		})
	}
	vc.waitVoters(n)
	return vc
}

// waitVoters waits until the active node lists n raft voters.
func (vc *VaultCluster) waitVoters(n int) {
	t := vc.Nodes[0].t
	t.Helper()
	deadline := time.Now().Add(vaultStartTimeout)
	var last error
	for time.Now().Before(deadline) {
		c, err := vc.ActiveClient()
		if err == nil {
			var s *vaultapi.Secret
			s, err = c.Logical().Read("sys/storage/raft/configuration")
			if err == nil && s != nil {
				voters := 0
				cfg, _ := s.Data["config"].(map[string]any)
				servers, _ := cfg["servers"].([]any)
				for _, sv := range servers {
					if m, _ := sv.(map[string]any); m["voter"] == true {
						voters++
					}
				}
				if voters == n {
					return
				}
				err = fmt.Errorf("%d voters", voters)
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testenv: vault raft: not %d voters after %s: %v", n, vaultStartTimeout, last)
}

// Active returns the node that is active now, or nil when none is.
func (vc *VaultCluster) Active() *Vault {
	for _, v := range vc.Nodes {
		if v.p.exited() {
			continue
		}
		c := v.newClient(v.t, "")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		h, err := c.Sys().HealthWithContext(ctx)
		cancel()
		if err == nil && !h.Sealed && !h.Standby {
			return v
		}
	}
	return nil
}

// ActiveClient returns a root client of the active node.
func (vc *VaultCluster) ActiveClient() (*vaultapi.Client, error) {
	v := vc.Active()
	if v == nil {
		return nil, errors.New("testenv: no active vault node")
	}
	return v.Client(v.t), nil
}

// Standbys returns the running, unsealed nodes that are not active.
func (vc *VaultCluster) Standbys() []*Vault {
	var out []*Vault
	active := vc.Active()
	for _, v := range vc.Nodes {
		if v != active && !v.p.exited() {
			out = append(out, v)
		}
	}
	return out
}

// WaitActive waits until some node other than except (which may be nil)
// is active, and returns it.
func (vc *VaultCluster) WaitActive(t testing.TB, except *Vault) *Vault {
	t.Helper()
	deadline := time.Now().Add(vaultStartTimeout)
	for time.Now().Before(deadline) {
		if v := vc.Active(); v != nil && v != except {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testenv: no vault node became active within %s", vaultStartTimeout)
	return nil
}

// Kill sends SIGKILL, as kill -9 does, and waits for the exit.
func (v *Vault) Kill() {
	v.t.Helper()
	v.p.kill()
}

// Restart starts a killed or stopped raft node again and unseals it; it
// rejoins the cluster from its own raft data.
func (v *Vault) Restart() {
	v.t.Helper()
	v.p.start(v.t)
	c := v.newClient(v.t, "")
	v.waitHTTP(c)
	v.p.waitFor(v.t, "unsealed", vaultStartTimeout, func() error {
		st, err := c.Sys().Unseal(v.unsealKey)
		if err != nil {
			return err
		}
		if st.Sealed {
			return errors.New("sealed")
		}
		return nil
	})
}

// Pause stops the node with SIGSTOP: it answers nothing, to its peers
// included, as a partitioned node does, until Resume.
func (v *Vault) Pause() { v.p.sendSignal(syscall.SIGSTOP) }

// Resume continues a paused node (SIGCONT).
func (v *Vault) Resume() { v.p.sendSignal(syscall.SIGCONT) }
