# jeton-jetond: the policy jetond runs under. Rendered by vaultkeys.Policies.
#
# Least privilege: jetond may mint data keys, unwrap and rewrap them under
# the main KEK, and read that KEK's configuration so it can refuse to start
# when the KEK is exportable. It cannot export, rotate, reconfigure, trim or
# delete the main KEK, and it reaches no other key, mount or secret.
#
# Per-generation KEKs live in the namespace "{{.Key}}-*": jetond creates one
# per tenant generation and deletes it to crypto-shred that generation.

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

# The per-generation KEKs. The glob also reaches the keys' sub-paths
# (config, rotate, trim, import), so allowed_parameters is the whole list
# of what jetond may send there: "type" to create a key, only as
# aes256-gcm96, and "deletion_allowed" on config to delete one. That
# leaves out exportable, allow_plaintext_backup, derived, key material to
# import and trimming, which all need parameters; what remains reachable,
# a parameterless rotate, only adds a version to a key jetond may delete.
path "{{.Mount}}/keys/{{.Key}}-*" {
  capabilities = ["create", "read", "update", "delete"]
  allowed_parameters = {
    "type"             = ["aes256-gcm96"]
    "deletion_allowed" = []
  }
}

path "{{.Mount}}/datakey/plaintext/{{.Key}}-*" {
  capabilities = ["update"]
}

path "{{.Mount}}/decrypt/{{.Key}}-*" {
  capabilities = ["update"]
}

path "{{.Mount}}/rewrap/{{.Key}}-*" {
  capabilities = ["update"]
}

# Keep jetond's own token alive (LifetimeWatcher) and let it inspect itself,
# so the token needs no "default" policy.
path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
