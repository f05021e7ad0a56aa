# Every tool is pinned and installed into .tools/bin (gitignored), so a fresh
# machine needs only Go; `make test` also installs redis-server from Debian's
# packages and builds a real Vault server from source (see integration/).

BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPCURL_VERSION            := v1.9.3
STATICCHECK_VERSION        := v0.8.2

TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)
export GOBIN := $(TOOLS)

.PHONY: run test tools generate checkgenerate lint testenv build soak

# run starts jetond in dev mode: in-memory store, ephemeral keys, generated
# certificates in .jeton-dev/, listeners on 127.0.0.1:7443 and :7444.
run:
	go run ./cmd/jetond --dev

build:
	go build -o bin/ ./cmd/...

$(TOOLS)/buf:
	go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLS)/grpcurl:
	go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
$(TOOLS)/staticcheck:
	go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/grpcurl $(TOOLS)/staticcheck

generate: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	buf lint proto
	buf generate

# checkgenerate fails when the committed generated code is stale.
checkgenerate: generate
	@if [ -n "$$(git status --porcelain -- proto)" ]; then \
		echo "generated code is stale; run make generate and commit:"; \
		git status --porcelain -- proto; exit 1; fi

lint: $(TOOLS)/staticcheck
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	go vet ./...
	staticcheck ./...

# testenv installs redis-server and builds the Vault server the integration
# tests start on loopback.
testenv:
	bash integration/testenv/install.sh

# test runs every test: unit, fuzz seeds, integration against real Redis and
# Vault, fault and load tests.
test: tools checkgenerate lint testenv
	go test -count=1 -timeout 40m ./...

# soak runs the long reliability test, not part of test: SOAK_DURATION of
# mixed load over three jetond replicas, Redis Cluster with replicas and
# Vault, one fault a minute (see RELIABILITY.md).
SOAK_DURATION ?= 10m
soak: testenv
	JETON_SOAK_DURATION=$(SOAK_DURATION) go test -count=1 -timeout 60m -run '^TestSoak$$' -v ./integration/
