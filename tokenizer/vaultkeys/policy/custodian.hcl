# jeton-custodian: the policy of the people who manage jeton's KEK.
# Rendered by vaultkeys.Policies.
#
# Custodians create, rotate, configure, trim and delete the KEK. They get no
# path that returns key material: no encrypt, no decrypt, no datakey, no
# export, no backup. Only jeton-jetond can reach a plaintext data key.
#
# The one-way flags exportable and allow_plaintext_backup are denied as
# parameters, so a custodian cannot make the KEK leave Vault either.

path "{{.Mount}}/keys/{{.Key}}" {
  capabilities = ["create", "read", "update", "delete"]
  denied_parameters = {
    "exportable"             = []
    "allow_plaintext_backup" = []
  }
}

path "{{.Mount}}/keys/{{.Key}}/rotate" {
  capabilities = ["update"]
}

# min_decryption_version, min_available_version and deletion_allowed.
# Raising min_decryption_version, then trimming, is how a custodian
# crypto-shreds what was wrapped under older KEK versions, and, after a
# rotation and a `jeton admin rewrap`, how key blobs written before keys
# were bound stop opening anywhere, backups included.
path "{{.Mount}}/keys/{{.Key}}/config" {
  capabilities = ["update"]
  denied_parameters = {
    "exportable"             = []
    "allow_plaintext_backup" = []
  }
}

path "{{.Mount}}/keys/{{.Key}}/trim" {
  capabilities = ["update"]
}

# The per-generation KEKs jetond creates ("{{.Key}}-<tenant>-g<N>"):
# custodians rotate, configure (min_decryption_version), trim and, to
# crypto-shred a generation by hand, delete them. They cannot create them,
# make them leave Vault, or import key material into them.
path "{{.Mount}}/keys/{{.GenKeys}}" {
  capabilities = ["read", "update", "delete"]
  denied_parameters = {
    "exportable"             = []
    "allow_plaintext_backup" = []
    "ciphertext"             = []
  }
}

# The names of the mount's keys, to see which generation keys exist.
path "{{.Mount}}/keys" {
  capabilities = ["list"]
}
