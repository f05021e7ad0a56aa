package tokenizer

// KeyIdentity returns the KEK name and the associated data that open
// blob, a stored key blob, as the DEK of generation gen of tenant, or as
// tenant's root key when gen is 0. Tests use it to play an attacker who
// can call the KeyManager directly.
func KeyIdentity(tenant string, gen uint32, blob []byte) (kek string, ad []byte) {
	id := rootKeyID(tenant)
	if gen > 0 {
		id = dekKeyID(tenant, gen)
	}
	b, err := parseKeyBlob(blob)
	if err != nil {
		panic("KeyIdentity: " + err.Error())
	}
	return id.opener(b)
}

// CachedGenerations counts the generations whose keys, or whose being
// destroyed, t's keyring holds in memory for tenant.
func CachedGenerations(t *Tokenizer, tenant string) int {
	tk := t.keys.cached(tenant)
	if tk == nil {
		return 0
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return len(tk.gens)
}
