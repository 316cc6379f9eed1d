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

.PHONY: list help deps preview up refresh destroy outputs validate verify-evidence \
        consumer-vars services-start services-stop services-status test test-unit lint-workflows bench typecheck

list help: ## List every target and every image with its type
	@echo "targets:"
	@grep -hE '^[a-zA-Z0-9 _-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([^:]+):.*## (.*)/  \1|\2/' | column -t -s '|'
	@if [ -x node_modules/.bin/ts-node ] && [ -f bin/list-images.ts ]; then echo "images:"; node_modules/.bin/ts-node --transpile-only bin/list-images.ts --make; fi

deps: ## Check required tools with versions (TARGET=engine|qcow2|validate|oci|...|all); non-zero if one is missing
	@bash scripts/deps.sh $(TARGET)

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

test-unit: ## Fast tests only (no image build, no VM)
	@$(ENV); mocha --grep @slow --invert 'test/**/*.test.ts'

validate: ## Validate any qcow2 offline: QCOW2=/abs/path IMAGE=<name> VERSION=<version> [BOOTSTRAP_USER=ansible] [EVIDENCE_DIR=evidence]; writes evidence
	@$(ENV); bash scripts/deps.sh validate >/dev/null || { bash scripts/deps.sh validate; exit 1; }
	@$(ENV); node -r ts-node/register/transpile-only bin/validate.ts --qcow2 "$(QCOW2)" --image "$(IMAGE)" --version "$(VERSION)" --user "$(or $(BOOTSTRAP_USER),ansible)" --evidence "$(or $(EVIDENCE_DIR),evidence)"

verify-evidence: ## Verify an evidence packet: DIR=evidence/images/vm/<image>/<version>/<UTC>/<build|validate>
	@bin/verify-evidence --dir "$(DIR)"
