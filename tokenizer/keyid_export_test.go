package tokenizer

// KeyIdentity returns the KEK name and the associated data that jeton
// computes for the DEK of generation gen of tenant, or for tenant's root
// key when gen is 0. Tests use it to play an attacker who can call the
// KeyManager directly.
func KeyIdentity(tenant string, gen uint32) (kek string, ad []byte) {
	id := rootKeyID(tenant)
	if gen > 0 {
		id = dekKeyID(tenant, gen)
	}
	return id.kek(), id.ad()
}
