package tokenizer

// Observer receives events worth counting, so a caller can export metrics
// without this package depending on a metrics library. Its methods are
// called on the request path, concurrently: they must be cheap and must not
// block. They never receive a value, a token or a key.
type Observer interface {
	// DEKCache reports one data-key lookup: hit when the key was served
	// from memory, miss when the KeyManager had to unwrap it.
	DEKCache(hit bool)
}

// observeDEK reports a DEK lookup to the observer, if there is one.
func (k *keyring) observeDEK(hit bool) {
	if k.obs != nil {
		k.obs.DEKCache(hit)
	}
}
