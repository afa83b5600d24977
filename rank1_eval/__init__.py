"""rank1_eval."""
