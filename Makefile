# image-factory operator interface (FR-12). It lists targets, reports dependencies and runs the factory; it
# never installs anything and never runs a package manager. First-time setup is `bash scripts/setup.sh`
# (or either quickstart command in README.md, which run it for you).
SHELL := /bin/bash
.ONESHELL:
.DEFAULT_GOAL := list
ROOT := $(CURDIR)
ENV := source $(ROOT)/scripts/env.sh
STACK ?= local
TARGET ?= all

.PHONY: vm builder-node pi iso packer-validate ansible-collections list help deps preview up refresh destroy outputs validate verify-evidence \
        consumer-vars services-start services-stop services-status test test-unit rehearse lint-workflows bench typecheck \
        image.tools.check image.local.full image.local.validate image.local.evidence lab.check serve build.cache

list help: ## List every target and every image with its type
	@echo "targets:"
	@grep -hE '^[a-zA-Z0-9 ._-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([^:]+):.*## (.*)/  \1\x1f\2/' | column -t -s $$'\x1f'
	@if [ -x node_modules/.bin/ts-node ]; then echo "images:"; node -r ts-node/register/transpile-only bin/list-images.ts --make; \
	 else echo "images: (run bash scripts/setup.sh first: the list is generated from images/ by TypeScript)"; fi

deps: ## Check required tools with versions (TARGET=engine|qcow2|packer|pi|iso|vm|builder-node|...|all); non-zero if one is missing
	@bash scripts/deps.sh $(TARGET)

# Per artifact type and per image (FR-12): build through the same pipeline as `pulumi up` (build key, sha256,
# offline validation) without publishing; STACK picks the config. Each checks its tools first and stops naming
# the missing one.
KIND_DEPS_vm := qcow2 validate
KIND_DEPS_builder-node := packer validate
KIND_DEPS_pi := pi validate
KIND_DEPS_iso := iso
IMAGE_KIND = $(shell node -r ts-node/register/transpile-only bin/list-images.ts --json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s||"[]").find(x=>x.name===process.argv[1]);process.stdout.write(r?r.kind:"")})' $(1))

vm: ## Build every VM image (rootfs or Packer qemu), validated, not published
	@bash scripts/deps.sh engine $(KIND_DEPS_vm) >/dev/null || { bash scripts/deps.sh $(KIND_DEPS_vm); exit 1; }
	@$(ENV); node -r ts-node/register/transpile-only bin/build-image.ts --stack $(STACK) --kind vm

builder-node: ## Build the builder node image (Packer qemu + Ansible), validated, not published
	@bash scripts/deps.sh engine $(KIND_DEPS_builder-node) >/dev/null || { bash scripts/deps.sh $(KIND_DEPS_builder-node); exit 1; }
	@$(ENV); node -r ts-node/register/transpile-only bin/build-image.ts --stack $(STACK) --kind builder-node

pi: ## Build every Raspberry Pi image (offline customisation, arm64 via qemu-user-static), validated, not published
	@bash scripts/deps.sh engine $(KIND_DEPS_pi) >/dev/null || { bash scripts/deps.sh $(KIND_DEPS_pi); exit 1; }
	@$(ENV); node -r ts-node/register/transpile-only bin/build-image.ts --stack $(STACK) --kind pi

iso: ## Build every ISO (unattended installer, NoCloud seed), reproducible, validated, not published
	@bash scripts/deps.sh engine $(KIND_DEPS_iso) >/dev/null || { bash scripts/deps.sh $(KIND_DEPS_iso); exit 1; }
	@$(ENV); node -r ts-node/register/transpile-only bin/build-image.ts --stack $(STACK) --kind iso

image-%: ## Build one image by name (make list shows them): make image-<name> [STACK=local]
	@kind='$(call IMAGE_KIND,$*)'; if [ -z "$$kind" ]; then echo "unknown image '$*': make list shows the images"; exit 2; fi; \
	 case $$kind in vm) d="$(KIND_DEPS_vm)";; builder-node) d="$(KIND_DEPS_builder-node)";; pi) d="$(KIND_DEPS_pi)";; iso) d="$(KIND_DEPS_iso)";; esac; \
	 bash scripts/deps.sh engine $$d >/dev/null || { bash scripts/deps.sh $$d; exit 1; }
	@$(ENV); node -r ts-node/register/transpile-only bin/build-image.ts --stack $(STACK) --image $*

build.cache: ## Shared build cache (one CI matrix job): make build.cache IMAGE=<name> STACK=<stack> [VERSION=vYYYY.MM.DD]: a verified entry of the key is used, else build, gate, push (signed: EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY)
	@if [ -z "$(IMAGE)" ]; then echo "usage: make build.cache IMAGE=<name> STACK=<stack> [VERSION=vYYYY.MM.DD] (make list shows the images)"; exit 2; fi
	@kind='$(call IMAGE_KIND,$(IMAGE))'; if [ -z "$$kind" ]; then echo "unknown image '$(IMAGE)': make list shows the images"; exit 2; fi; \
	 case $$kind in vm) d="$(KIND_DEPS_vm)";; builder-node) d="$(KIND_DEPS_builder-node)";; pi) d="$(KIND_DEPS_pi)";; iso) d="$(KIND_DEPS_iso)";; esac; \
	 bash scripts/deps.sh engine $$d >/dev/null || { bash scripts/deps.sh $$d; exit 1; }
	@$(ENV); node -r ts-node/register/transpile-only bin/build-image.ts --stack $(STACK) --image "$(IMAGE)" --cache $(if $(VERSION),--version "$(VERSION)") $(if $(EVIDENCE_DIR),--evidence "$(EVIDENCE_DIR)")

packer-validate: ## packer validate every Packer template (as CI does), with generated variables
	@bash scripts/deps.sh packer >/dev/null || { bash scripts/deps.sh packer; exit 1; }
	@$(ENV); node -r ts-node/register/transpile-only bin/packer-validate.ts

ansible-collections: ## Install ansible/requirements.yml into the project-local ansible/collections (never system-wide)
	@bash scripts/ansible-collections.sh

typecheck: ## Type-check the whole program (tsc --noEmit, strict)
	@$(ENV); tsc -p tsconfig.json --noEmit

preview: ## pulumi preview of STACK (default local) with the policy pack, as in PR checks (POLICY=0: without)
	@$(ENV); bash scripts/deps.sh engine >/dev/null && pulumi preview --stack $(STACK) --diff $(if $(filter 0,$(POLICY)),,--policy-pack policy)

up: ## pulumi up of STACK (default local); the local stack needs `make services-start`
	@$(ENV); bash scripts/deps.sh engine >/dev/null && pulumi up --stack $(STACK) --yes

refresh: ## pulumi refresh of STACK
	@$(ENV); pulumi refresh --stack $(STACK) --yes

destroy: ## pulumi destroy of STACK (published OCI tags and release assets stay unless configured otherwise)
	@$(ENV); pulumi destroy --stack $(STACK) --yes

outputs: ## Stack outputs as JSON (the contract Terraform and Ansible read; shape: schemas/outputs.schema.json)
	@$(ENV); pulumi stack output --stack $(STACK) --json --show-secrets=false

lab.check: ## Before a lab run (read-only, seconds): secrets per target, backend, bootstrap key, the store's public URL, the runner: make lab.check STACK=dvnt
	@$(ENV); node -r ./scripts/require-ts-cached.js bin/lab-check.ts --stack $(STACK)

serve: ## Serve STACK's artifact store at its configured host and port in the foreground (for a host that is not the builder node: deploy/image-factory-artifacts.service)
	@$(ENV); node -r ./scripts/require-ts-cached.js bin/artifact-server.ts --stack $(STACK)

consumer-vars: ## Write STACK's outputs as Terraform tfvars and Ansible group vars for examples/ (checked against the schema first)
	@$(ENV); node -r ts-node/register/transpile-only bin/consumer-vars.ts --stack $(STACK)

services-start: ## Start the loopback services of the local stack (artifact HTTP server, OCI registry)
	@bash scripts/services.sh start

services-stop: ## Stop the loopback services
	@bash scripts/services.sh stop

services-status: ## Show the loopback services
	@bash scripts/services.sh status

test: ## Run the test suite (needs setup; `npm test` does setup and then this)
	@$(ENV); bash scripts/deps.sh engine >/dev/null || { echo "run npm test (it sets up first)"; exit 1; }; mocha 'test/**/*.test.ts'

rehearse: ## Lab rehearsal: the CI jobs' scripts for dvnt then dvntm in fresh clones, state in S3, every endpoint on loopback (CI subset; FULL=1: every dvnt image this machine can build)
	@$(ENV); bash scripts/deps.sh engine qcow2 iso >/dev/null || { bash scripts/deps.sh engine qcow2 iso; exit 1; }; \
	 [ -x .tools/fakepve/bin/python ] || { echo "rehearse: the Proxmox VE test API is missing: run bash scripts/setup.sh"; exit 1; }; \
	 [ -x .tools/bin/versitygw ] || { echo "rehearse: the S3 state backend (versitygw) is missing: run bash scripts/setup.sh"; exit 1; }; \
	 IMAGE_FACTORY_REHEARSAL=$(if $(FULL),full,ci) mocha --exit test/e2e/rehearsal.test.ts

test-unit: ## Fast tests only (no image build, no VM)
	@$(ENV); mocha --grep @slow --invert 'test/**/*.test.ts'

validate: ## Validate any qcow2 offline (BOOT=1: and by booting it): QCOW2=/abs/path IMAGE=<name> VERSION=<version> [BOOTSTRAP_USER=ansible] [EVIDENCE_DIR=evidence]; writes evidence
	@$(ENV); bash scripts/deps.sh validate >/dev/null || { bash scripts/deps.sh validate; exit 1; }
	@$(ENV); node -r ts-node/register/transpile-only bin/validate.ts --qcow2 "$(QCOW2)" --image "$(IMAGE)" --version "$(VERSION)" --user "$(or $(BOOTSTRAP_USER),ansible)" --evidence "$(or $(EVIDENCE_DIR),evidence)" $(if $(filter 1,$(BOOT)),--boot)

# The local image runbook (seed 002), as thin aliases over the targets above.
image.tools.check: ## Runbook: check every tool the image runbook uses, with versions (= make deps TARGET=all)
	@bash scripts/deps.sh all

image.local.full: ## Runbook: IMAGE_BUILD=1 make image.local.full IMAGE=<image> VERSION=<version>: build, validate offline and by boot, write evidence
	@if [ "$(IMAGE_BUILD)" != 1 ]; then echo "image.local.full builds an image (minutes; no root needed): run it as IMAGE_BUILD=1 make image.local.full IMAGE=<image> VERSION=<version>"; exit 2; fi
	@if [ -z "$(IMAGE)" ] || [ -z "$(VERSION)" ]; then echo "usage: IMAGE_BUILD=1 make image.local.full IMAGE=<image> VERSION=<vN or vYYYY.MM.DD> (make list shows the images; IMAGE=debian-12 is debian-12-minimal)"; exit 2; fi
	@$(ENV); node -r ts-node/register/transpile-only bin/build-image.ts --stack $(STACK) --image "$(IMAGE)" --version "$(VERSION)" --boot --evidence "$(or $(EVIDENCE_DIR),evidence)"

image.local.validate: ## Runbook: make image.local.validate IMAGE= VERSION= QCOW2= (default: QCOW2_FIXTURE_PATH): offline and boot validation, evidence
	@$(MAKE) --no-print-directory validate BOOT=1 QCOW2="$(or $(QCOW2),$(QCOW2_FIXTURE_PATH))"

image.local.evidence: ## Runbook: make image.local.evidence IMAGE= VERSION= QCOW2= (EVIDENCE_SIGN=1 EVIDENCE_GPG_KEY=<id>: signed): offline validation evidence
	@$(MAKE) --no-print-directory validate QCOW2="$(or $(QCOW2),$(QCOW2_FIXTURE_PATH))"

verify-evidence: ## Verify an evidence packet: DIR=evidence/images/vm/<image>/<version>/<UTC>/<build|validate>
	@bin/verify-evidence --dir "$(DIR)"
