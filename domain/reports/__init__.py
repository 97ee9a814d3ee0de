"""Reports as audited records: definitions, executions pinned to Delta versions, a signed lifecycle, exports."""
