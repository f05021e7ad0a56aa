# Every tool is pinned and installed into .tools/bin (gitignored), so a fresh
# machine needs only Go; `make test` also installs redis-server from Debian's
# packages and builds a real Vault server from source (see integration/).

BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPCURL_VERSION            := v1.9.3
STATICCHECK_VERSION        := v0.8.2
HELM_VERSION               := v3.22.0

# make image: the image's tag and the platforms built (e.g.
# IMAGE_PLATFORMS=linux/amd64,linux/arm64).
IMAGE_TAG       ?= dev
IMAGE_PLATFORMS ?= linux/$(shell go env GOARCH)

TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)
export GOBIN := $(TOOLS)

.PHONY: run test tools generate checkgenerate lint testenv build bench node-deps image helm deploytest soak

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
# helm is built from source; the first build takes a few minutes.
$(TOOLS)/helm:
	go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
helm: $(TOOLS)/helm

tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/grpcurl $(TOOLS)/staticcheck $(TOOLS)/helm

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
	cd deploy && go vet ./... && staticcheck ./...

# testenv installs redis-server and builds the Vault server the integration
# tests start on loopback.
testenv:
	bash integration/testenv/install.sh

# node-deps installs the Node.js example client's packages, at the exact
# versions of its lockfile, from the npm registry.
node-deps:
	cd examples/node && npm ci --no-audit --no-fund

# BENCH_PKGS are the packages with Go benchmarks (found afresh each run).
BENCH_PKGS = $(sort $(dir $(shell grep -rl --include='*_test.go' --exclude-dir=.tools --exclude-dir=.git '^func Benchmark' .)))

# image builds jetond's container image with no container daemon and no
# base image to pull (deploy/image): bin/image/oci is an OCI layout of every
# platform (crane push / skopeo copy --all oci:bin/image/oci ...), and
# bin/image/jetond.tar a docker-archive of the first (docker/podman load).
# Ships the build machine's CA bundle (Debian's ca-certificates).
image:
	cd deploy && go run ./cmd/mkimage -src .. -out ../bin/image -tag jetond:$(IMAGE_TAG) -platform $(IMAGE_PLATFORMS)

# deploytest checks the image make image built, and the Helm chart: helm
# lint, helm template, every object decoded strictly into the Kubernetes
# API types. deploy/ is its own module, so importing jeton never pulls in
# Kubernetes or go-containerregistry.
deploytest: image $(TOOLS)/helm
	cd deploy && JETON_IMAGE_LAYOUT=$(CURDIR)/bin/image/oci HELM=$(TOOLS)/helm go test -count=1 ./...

# test runs every test: unit, fuzz seeds, integration against real Redis and
# Vault, fault and load tests (including a short smoke run of the `make
# bench` harness), the Node.js client against jetond, the image and the
# Helm chart; then every Go benchmark once, so none can rot. It holds the
# ports `make run` uses while the tests run, so a test that binds one of
# them fails here as it would while `make run` is up: tests bind free ports
# only.
test: tools checkgenerate lint testenv node-deps deploytest
	go run ./internal/holdports -- go test -count=1 -timeout 40m ./...
	go test -count=1 -timeout 10m -run '^$$' -bench . -benchtime 1x $(BENCH_PKGS)

# bench is the end-to-end benchmark, under 5 minutes: its own Redis, Vault
# and jetond (production configuration) on loopback, jeton's calls
# interleaved with their baselines over BENCH_ROUNDS rounds. It prints the
# table and adds the run to BENCHMARKS.md. BENCH_PROFILE=dir also saves
# jetond's CPU and allocation profiles of each workload (last round);
# BENCH_TITLE names the run, BENCH_NOTE adds a remark. BENCH_BEFORE=bin
# also runs every jeton workload against that jetond binary (e.g. one built
# from main), interleaved, and adds a before/after table (about twice as
# long). BENCH_ONLY=key,key runs those workloads only (keys as in
# integration/bench/workloads_test.go), to measure one change quickly.
# BENCH_MAX_ITEMS raises the 200,000 items a measurement stops at, so that
# a long BENCH_DURATION profiles the whole of it.
BENCH_ROUNDS   ?= 3
BENCH_DURATION ?= 1.5s
BENCH_PROFILE  ?=
BENCH_TITLE    ?=
BENCH_NOTE     ?=
BENCH_BEFORE   ?=
BENCH_ONLY     ?=
BENCH_MAX_ITEMS ?= 200000

bench: testenv
	go test -count=1 -timeout 15m -run '^TestBench$$' -v ./integration/bench -args -jeton.bench \
		-jeton.bench.rounds=$(BENCH_ROUNDS) -jeton.bench.duration=$(BENCH_DURATION) \
		-jeton.bench.out=$(CURDIR)/BENCHMARKS.md -jeton.bench.title="$(BENCH_TITLE)" -jeton.bench.note="$(BENCH_NOTE)" \
		$(if $(BENCH_PROFILE),-jeton.bench.profile=$(abspath $(BENCH_PROFILE))) \
		$(if $(BENCH_BEFORE),-jeton.bench.before=$(abspath $(BENCH_BEFORE))) \
		$(if $(BENCH_ONLY),-jeton.bench.only=$(BENCH_ONLY)) -jeton.bench.maxitems=$(BENCH_MAX_ITEMS)

# soak runs the long reliability test, not part of test: SOAK_DURATION of
# mixed load over three jetond replicas, Redis Cluster with replicas and
# Vault, one fault a minute (see RELIABILITY.md).
SOAK_DURATION ?= 10m
soak: testenv
	JETON_SOAK_DURATION=$(SOAK_DURATION) go test -count=1 -timeout 60m -run '^TestSoak$$' -v ./integration/
