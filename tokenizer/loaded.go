package tokenizer

import "slices"

// LoadedTenants returns, sorted, the tenants whose root key and at least
// one data key this process holds in memory: those it can still serve,
// for the generations it has loaded, while the KeyManager is unreachable.
// Readiness uses it to stay up through a Vault outage.
func (t *Tokenizer) LoadedTenants() []string {
	k := t.keys
	k.mu.Lock()
	tenants := make([]*tenantKeys, 0, len(k.tenants))
	for name, tk := range k.tenants {
		if name != systemKeyring {
			tenants = append(tenants, tk)
		}
	}
	k.mu.Unlock()
	var out []string
	for _, tk := range tenants {
		tk.mu.Lock()
		for _, c := range tk.gens {
			if c.keys != nil { // nil: a generation known to be destroyed
				out = append(out, tk.name)
				break
			}
		}
		tk.mu.Unlock()
	}
	slices.Sort(out)
	return out
}
