# memgrid local infrastructure (Kafka, Neo4j, MinIO on 127.0.0.1, no Docker).
# Included by the root Makefile (`-include infra/local/infra.mk`); see infra/local/README.md.
#   make infra-up | infra-down | infra-status | infra-install | infra-env | infra-logs
#   make infra-up-kafka | infra-up-neo4j | infra-up-minio   (and infra-down-<server>)
# Configuration is MGINFRA_* environment variables (ports, passwords, data dir, versions).
INFRA_PYTHON ?= python3
INFRA := $(INFRA_PYTHON) infra/local/memgrid_infra.py
INFRA_SERVERS := kafka neo4j minio

.PHONY: infra-install infra-up infra-down infra-status infra-env infra-logs infra-wipe \
	$(addprefix infra-up-,$(INFRA_SERVERS)) $(addprefix infra-down-,$(INFRA_SERVERS)) \
	$(addprefix infra-status-,$(INFRA_SERVERS))

infra-install:
	$(INFRA) install

infra-up:
	$(INFRA) up

infra-down:
	$(INFRA) down

infra-status:  # (the script itself exits 1 unless every server is running)
	@$(INFRA) status || true

infra-env:
	@$(INFRA) env

infra-logs:
	$(INFRA) logs

infra-wipe:
	$(INFRA) wipe

$(addprefix infra-up-,$(INFRA_SERVERS)): infra-up-%:
	$(INFRA) up $*

$(addprefix infra-down-,$(INFRA_SERVERS)): infra-down-%:
	$(INFRA) down $*

$(addprefix infra-status-,$(INFRA_SERVERS)): infra-status-%:
	@$(INFRA) status $* || true
