"""Lab material: samples and batches, their lineage, chain of custody and trace (issue 9 §2)."""
