# jeton-jetond: the policy jetond runs under. Rendered by vaultkeys.Policies.
#
# Least privilege: jetond may mint data keys, unwrap and rewrap them under
# the one KEK, and read that KEK's configuration so it can refuse to start
# when the KEK is exportable. It cannot export, rotate, reconfigure, trim or
# delete the KEK, and it reaches no other key, mount or secret.

path "{{.Mount}}/datakey/plaintext/{{.Key}}" {
  capabilities = ["update"]
}

path "{{.Mount}}/decrypt/{{.Key}}" {
  capabilities = ["update"]
}

path "{{.Mount}}/rewrap/{{.Key}}" {
  capabilities = ["update"]
}

path "{{.Mount}}/keys/{{.Key}}" {
  capabilities = ["read"]
}

# Keep jetond's own token alive (LifetimeWatcher) and let it inspect itself,
# so the token needs no "default" policy.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
