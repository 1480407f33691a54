"""The exchange's path of a batch: pull, check, quarantine, seal, hand off, recover."""
