"""memgrid local infra launcher: one module per server (kafka, neo4j, minio) + common."""
