# Thin wrappers over the ingot CLI and the test suites. See README.md.

CARGO  ?= cargo
RECIPE ?= recipes/ubuntu-24.04
OUT    ?= out
INGOT  := target/release/ingot

.PHONY: ingot image.build-next image.build image.verify image.resolve image.upload test test-hermetic e2e bench doctor

ingot:
	$(CARGO) build --release --locked

# The seed's command: build the next version of the golden image into $(OUT).
image.build-next: ingot
	$(INGOT) build $(RECIPE) --out $(OUT) --next

# Build exactly version $(VERSION) (refused if it exists).
image.build: ingot
	@test -n "$(VERSION)" || { echo "usage: make image.build VERSION=N" >&2; exit 2; }
	$(INGOT) build $(RECIPE) --out $(OUT) --version $(VERSION)

image.verify: ingot
	@test -n "$(IMAGE)" || { echo "usage: make image.verify IMAGE=out/…tar.gz" >&2; exit 2; }
	$(INGOT) verify $(IMAGE)

# Upload the newest version in $(OUT) to Proxmox (settings from PM_* variables, see README).
image.upload: ingot
	@newest=$$(ls $(OUT)/*-v[0-9]*.tar* 2>/dev/null | grep -E -- '-v[0-9]+\.tar(\.(gz|zst|xz|bz2))?$$' | sort -V | tail -n 1); \
	test -n "$$newest" || { echo "no image in $(OUT)/: run make image.build-next first" >&2; exit 2; }; \
	INGOT=$(INGOT) scripts/upload-lxc-template-via-api.sh "$$newest" $(UPLOAD_FLAGS)

image.resolve: ingot
	$(INGOT) resolve $(RECIPE)

doctor: ingot
	$(INGOT) doctor

# Every suite: hermetic tests, then the end-to-end suite against the real Ubuntu archive.
test: test-hermetic e2e

test-hermetic:
	$(CARGO) test --locked

e2e: ingot
	scripts/e2e/run.sh

bench: ingot
	scripts/bench.sh
