# The two contract commands (see README.md):
#   make demo   run the main job on the built-in example (the seed article's server)
#   make test   install what the tests need, then run every test
# Each step is defined once: cargo and `cargo xtask` do the work.

CARGO ?= cargo
# Debian packages the test suites drive for real.
APT_PACKAGES := iptables nmap libxml2-utils iproute2 iputils-ping procps time g++ util-linux
# Commands that prove those packages are present.
NEEDED_COMMANDS := iptables iptables-legacy ip6tables nmap xmllint ip ping ps /usr/bin/time g++ flock unshare setsid

.PHONY: demo test deps build lint clean-netns

demo: deps build
	$(CARGO) run --release --quiet -p portcullis -- demo

build:
	$(CARGO) build --release -p portcullis

deps:
	@missing=""; for c in $(NEEDED_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing test prerequisites (missing:$$missing)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --quiet -- -D warnings
	$(CARGO) xtask deps

test: deps
	$(CARGO) test --workspace --all-targets --quiet
	$(CARGO) test --workspace --doc --quiet
	$(CARGO) xtask e2e
	$(CARGO) xtask fuzz --smoke
	$(CARGO) xtask soak
	$(MAKE) --no-print-directory lint

clean-netns:
	$(CARGO) run --quiet -p portcullis -- verify --cleanup
