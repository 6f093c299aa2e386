# glmctl — see README.md. `make help` lists the targets.
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
PKGS     := ./...

.PHONY: help build demo test check bench systemd-verify install clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/glmctl and the stand-in servers
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/glmctl ./cmd/glmctl
	$(GO) build -o $(BIN)/vllm-stub ./cmd/vllm-stub
	$(GO) build -o $(BIN)/webui-stub ./cmd/webui-stub

demo: build ## build, then run the embedded demo in the foreground (Ctrl-C stops it)
	exec $(BIN)/glmctl up --demo

test: ## every test, with the race detector
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

check: ## gofmt, go vet, staticcheck and govulncheck when installed, systemd unit
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt'd:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); else echo "staticcheck not installed: skipped"; fi
	@if command -v govulncheck >/dev/null; then govulncheck $(PKGS); else echo "govulncheck not installed: skipped"; fi
	$(MAKE) systemd-verify

systemd-verify: build ## systemd-analyze verify on the unit (with this build as ExecStart)
	@tmp=$$(mktemp -d); sed "s|/usr/local/bin/glmctl|$(CURDIR)/$(BIN)/glmctl|" systemd/glmctl.service > $$tmp/glmctl.service; \
	  systemd-analyze verify $$tmp/glmctl.service; rc=$$?; rm -rf $$tmp; exit $$rc

bench: build ## benchmarks: Go benchmarks and the supervisord comparison
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./pkg/...
	GLMCTL=$(CURDIR)/$(BIN)/glmctl bench/supervisord/bench.sh

install: build ## install the binary and the systemd unit (root)
	install -m 0755 $(BIN)/glmctl /usr/local/bin/glmctl
	install -m 0644 systemd/glmctl.service /etc/systemd/system/glmctl.service
	install -d -m 0750 /etc/glmctl

clean:
	rm -rf $(BIN)

.PHONY: fuzz-smoke
fuzz-smoke: ## every fuzz target of every package briefly (FUZZTIME=20000x executions each; scripts/fuzz-smoke.sh)
	GO="$(GO)" scripts/fuzz-smoke.sh

.PHONY: check-deploy
check-deploy: ## Prometheus rules (promtool check + unit tests) and the Grafana dashboard (needs promtool, jq)
	@command -v promtool >/dev/null || { echo "promtool not found: apt-get install prometheus (Debian ships it there)"; exit 1; }
	promtool check rules deploy/prometheus/glmctl-rules.yml
	promtool test rules deploy/prometheus/glmctl-rules.test.yml
	deploy/check.sh

.PHONY: bench-proxy
bench-proxy: build ## glmctl's guard vs nginx vs direct, side by side (bench/proxy/bench.sh; SMOKE=1 for a short check; REPS=, DURATION=, RATES=)
	GLMCTL=$(CURDIR)/$(BIN)/glmctl GO="$(GO)" bench/proxy/bench.sh

.PHONY: demo-cluster
demo-cluster: build ## two glmctl boxes sharing one set of limits through a local redis-server (Ctrl-C stops all)
	GLMCTL=$(CURDIR)/$(BIN)/glmctl scripts/demo-cluster.sh

.PHONY: faults
faults: ## the fault suite: floods, kill -9, cut streams, hung model, full audit disk, broken keys files (FAULTS_RUN= to pick)
	GLMCTL_SOAK=$(SOAK) $(GO) test -race -count=1 -v -timeout 30m -run '$(or $(FAULTS_RUN),$(FAULT_TESTS))' ./...
FAULT_TESTS := TestFloodCannotStarveSupervisor|TestKill9LeavesNoProcess|TestStreamCutEndsWithError|TestHungUpstreamRefusedAtOnce|TestAuditFailureLoggedOnce|TestMissingKeysFileRecorded|TestInvalidReloadKeepsOldKeys|TestStopReachesStoppedProcess|TestStarvedSupervisorRecovers|TestStoreFailureModes|TestRefusedRequestAnsweredWithoutItsBody|TestSlowBodyCut|TestConnectionCaps|TestFullFilesystem|TestReadOnlyDirectory|TestKill9Durability|TestCrashDuringRotation|TestReloadUnderLoad|TestKill9UnderLoad|TestSIGTERMWithOpenStreams|TestSoak|TestSIGTERMDrainTimeoutCutsStreams|TestDrainTimeoutEndsExchanges
SOAK ?= 4m
