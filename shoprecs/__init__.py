"""shoprecs: shared configuration, privacy helpers and the command line."""
