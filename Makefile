# Thin wrappers over the ingot CLI and the test suites. See README.md.

CARGO  ?= cargo
RECIPE ?= recipes/ubuntu-24.04
OUT    ?= out
INGOT  := target/release/ingot
# RECIPE may be a folder or the name of one under recipes/ (RECIPE=debian-13).
RECIPE_DIR = $(if $(wildcard $(RECIPE)/recipe.toml),$(RECIPE),recipes/$(RECIPE))
# Every golden recipe, built by `make images`. The Debian ones take the site's mirrors from
# DEBIAN_MIRROR (their --mirror only) and INGOT_SUITE_MIRRORS (e.g.
# bookworm-security=URL,trixie-security=URL); the Ubuntu ones use their own.
IMAGES := ubuntu-22.04 ubuntu-24.04 ubuntu-26.04 debian-12 debian-13
DEBIAN_MIRROR ?=

.PHONY: ingot images image.build-next image.build image.verify image.resolve image.upload test test-hermetic test-hermetic-user e2e bench doctor

ingot:
	$(CARGO) build --release --locked

# The seed's command: build the next version of the golden image into $(OUT).
image.build-next: ingot
	$(INGOT) build $(RECIPE_DIR) --out $(OUT) --next

# The next version of every golden image (one shared cache), stopping at the first failure.
images: ingot
	@for r in $(IMAGES); do \
	  echo "make images: $$r" >&2; \
	  case $$r in debian-*) m="$(if $(DEBIAN_MIRROR),--mirror $(DEBIAN_MIRROR))";; *) m="";; esac; \
	  $(INGOT) build recipes/$$r --out $(OUT) --next $$m || exit 1; \
	done

# Build exactly version $(VERSION) (refused if it exists).
image.build: ingot
	@test -n "$(VERSION)" || { echo "usage: make image.build VERSION=N" >&2; exit 2; }
	$(INGOT) build $(RECIPE_DIR) --out $(OUT) --version $(VERSION)

image.verify: ingot
	@test -n "$(IMAGE)" || { echo "usage: make image.verify IMAGE=out/…tar.gz" >&2; exit 2; }
	$(INGOT) verify $(IMAGE)

# Upload the newest version in $(OUT) to Proxmox (settings from PM_* variables, see README).
image.upload: ingot
	@newest=$$(ls $(OUT)/*-v[0-9]*.tar* 2>/dev/null | grep -E -- '-v[0-9]+\.tar(\.(gz|zst|xz|bz2))?$$' | sort -V | tail -n 1); \
	test -n "$$newest" || { echo "no image in $(OUT)/: run make image.build-next first" >&2; exit 2; }; \
	INGOT=$(INGOT) scripts/upload-lxc-template-via-api.sh "$$newest" $(UPLOAD_FLAGS)

image.resolve: ingot
	$(INGOT) resolve $(RECIPE_DIR)

doctor: ingot
	$(INGOT) doctor

# Every suite: hermetic tests (as root, then as an ordinary build user), then the end-to-end
# suite against the real Ubuntu archive.
test: test-hermetic test-hermetic-user e2e

test-hermetic:
	$(CARGO) test --locked

# The hermetic suite's binaries run as an ordinary user with a subordinate id range (root:
# creates the user; INGOT_CI_USER, INGOT_CI_SUBIDS choose them).
test-hermetic-user:
	.ci/hermetic-as-user

e2e: ingot
	scripts/e2e/run.sh

bench: ingot
	scripts/bench.sh
