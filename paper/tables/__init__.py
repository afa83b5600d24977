"""The paper's table manifests (package data: ``rank1_eval.bundled_tables``)."""
